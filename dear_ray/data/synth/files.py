"""Writers of the synthetic data set's lists, SDN side inputs, metadata and manifest.

Everything here is a pure function of the plan and the workers' results, written in plan order, so
the bytes depend only on the seed and parameters (and on numpy/pyarrow's serialisation formats).
"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import av
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from dear_ray.data.synth.generate import (
    GENERATOR,
    GENERATOR_VERSION,
    SCUFO_DIR,
    SPLITS,
    STATIC_BIAS_SPLITS,
    VAL_UNKNOWN_SPLIT,
    SynthParams,
    VideoResult,
    VideoTask,
    sha256_file,
)
from dear_ray.data.synth.scenes import held_out_scene_names, scene_names

#: Files whose bytes are reproducible from (seed, parameters) given the numpy/pyarrow versions.
DETERMINISTIC_FILES: tuple[str, ...] = (
    "classes.txt", "unknown_classes.txt", "scenes.txt", "train.txt", "val.txt", "test.txt",
    "test_shifted.txt", "unknown.txt", "test_scuba.txt", "test_scufo.txt", "videos.csv",
    "scene_labels.npy", "scene_labels.parquet", "detections.npy", "detections.parquet",
    "val_unknown.txt", "val_unknown_classes.txt",
)
METADATA_COLUMNS = ("video_id", "path", "split", "class_name", "label", "scene", "scene_name",
                    "still_frame")


def _write_lines(path: Path, lines: list[str]) -> None:
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")


def write_lists(root: Path, params: SynthParams, tasks: list[VideoTask]) -> None:
    """Class files and the seven annotation lists (``videos/<class>/<id>.mp4 <label>``;
    test_scufo: ``videos_scufo/<class>/<id>.mp4``, line i = the still of test_scuba's line i)."""
    known, unknown = params.class_names()
    _write_lines(root / "classes.txt", known)
    _write_lines(root / "unknown_classes.txt", unknown)
    _write_lines(root / "val_unknown_classes.txt", list(params.val_unknown_motions))
    _write_lines(root / "scenes.txt", scene_names(params.scene_types))
    for split in SPLITS:
        _write_lines(root / f"{split}.txt", [f"{t.rel_path} {t.label}" for t in tasks if t.split == split])


def write_metadata(root: Path, params: SynthParams, tasks: list[VideoTask]) -> None:
    """``videos.csv``: the truth per video (split, class, label, scene) that `check_bias` measures;
    ``still_frame``: the repeated frame of a test_scufo clip (empty for the others)."""
    names = scene_names(params.scene_types) + held_out_scene_names()
    with open(root / "videos.csv", "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(METADATA_COLUMNS)
        for t in tasks:
            writer.writerow([t.video_id, t.rel_path, t.split, t.class_name, t.label, t.scene, names[t.scene],
                             "" if t.still_frame is None else t.still_frame])


def write_sdn_inputs(root: Path, tasks: list[VideoTask], results: list[VideoResult]) -> None:
    """Scene pseudo-labels and actor boxes, as SDN's pickled dicts (.npy) and as parquet.

    ``scene_labels``: ``{class: {video_id: {'pred_cls': int, 'probs': float32 [P]}}}``;
    ``detections``: ``{class: {video_id: {frame (1-based): {'human_boxes': float32 [N, 5]}}}}``.
    test_scuba / test_scufo videos have neither: their held-out scene is none of the P
    pseudo-label classes, a SCUFO clip shares its SCUBA clip's id, and SDN reads side inputs for
    training videos only.
    """
    kept = [i for i, t in enumerate(tasks) if t.split not in (*STATIC_BIAS_SPLITS, VAL_UNKNOWN_SPLIT)]
    tasks, results = [tasks[i] for i in kept], [results[i] for i in kept]
    scene_dict: dict[str, dict] = {}
    det_dict: dict[str, dict] = {}
    scene_rows: dict[str, list] = {"video_id": [], "class_name": [], "pred_cls": [], "probs": []}
    det_rows: dict[str, list] = {k: [] for k in ("video_id", "class_name", "frame")}
    det_boxes: list[np.ndarray] = []
    for task, res in zip(tasks, results, strict=True):
        if task.video_id != res.video_id:
            raise RuntimeError(f"worker results out of order: {task.video_id} != {res.video_id}")
        cls = task.class_name
        # astype copies: an array unpickled from a worker carries its own dtype object (np.array
        # keeps it), which pickle (the .npy dicts) writes differently: workers=1 and 2 differed
        scene_dict.setdefault(cls, {})[task.video_id] = {"pred_cls": int(res.pred_cls),
                                                         "probs": res.probs.astype(np.float32)}
        det_dict.setdefault(cls, {})[task.video_id] = {
            f + 1: {"human_boxes": boxes.astype(np.float32)} for f, boxes in enumerate(res.boxes)
        }
        scene_rows["video_id"].append(task.video_id)
        scene_rows["class_name"].append(cls)
        scene_rows["pred_cls"].append(res.pred_cls)
        scene_rows["probs"].append(res.probs)
        for f, boxes in enumerate(res.boxes):
            det_rows["video_id"].extend([task.video_id] * len(boxes))
            det_rows["class_name"].extend([cls] * len(boxes))
            det_rows["frame"].extend([f + 1] * len(boxes))
            det_boxes.append(boxes)
    np.save(root / "scene_labels.npy", np.array(scene_dict, dtype=object), allow_pickle=True)
    np.save(root / "detections.npy", np.array(det_dict, dtype=object), allow_pickle=True)

    probs = np.stack(scene_rows["probs"]).astype(np.float32)
    scene_table = pa.table({
        "video_id": pa.array(scene_rows["video_id"], pa.string()),
        "class_name": pa.array(scene_rows["class_name"], pa.string()),
        "pred_cls": pa.array(scene_rows["pred_cls"], pa.int64()),
        "probs": pa.FixedSizeListArray.from_arrays(pa.array(probs.ravel(), pa.float32()),
                                                   probs.shape[1]).cast(pa.list_(pa.float32())),
    })
    pq.write_table(scene_table, root / "scene_labels.parquet")
    boxes = np.concatenate(det_boxes).astype(np.float32) if det_boxes else np.zeros((0, 5), np.float32)
    det_table = pa.table({
        "video_id": pa.array(det_rows["video_id"], pa.string()),
        "class_name": pa.array(det_rows["class_name"], pa.string()),
        "frame": pa.array(det_rows["frame"], pa.int64()),
        **{c: pa.array(boxes[:, i], pa.float32()) for i, c in enumerate(("x1", "y1", "x2", "y2", "score"))},
    })
    pq.write_table(det_table, root / "detections.parquet")


def build_manifest(root: Path, params: SynthParams, tasks: list[VideoTask], results: list[VideoResult],
                   pairs: list[int], val_pairs: list[int]) -> dict:
    """The manifest: generator, parameters, classes, scene plan, counts and checksums."""
    known, unknown = params.class_names()
    counts = {split: sum(t.split == split for t in tasks) for split in SPLITS}
    return {
        "generator": GENERATOR,
        "version": GENERATOR_VERSION,
        "seed": int(params.seed),
        "params": params.to_dict(),
        "classes": known,
        "unknown_classes": unknown,
        "scenes": scene_names(params.scene_types),
        "scuba_scenes": {name: params.scene_types + j for j, name in enumerate(held_out_scene_names())},
        "class_scene": {name: i for i, name in enumerate(known)},
        "unknown_scene": {name: pairs[i] for i, name in enumerate(unknown)},
        "val_unknown_classes": list(params.val_unknown_motions),
        "val_unknown_scene": {name: val_pairs[i] for i, name in enumerate(params.val_unknown_motions)},
        "counts": counts,
        "videos_per_class": params.counts(),
        "video": {"frames": params.frames, "height": params.size, "width": params.size, "fps": params.fps,
                  "codec": "h264", "pix_fmt": "yuv420p", "container": "mp4"},
        "side_inputs": {"scene_labels": ["scene_labels.npy", "scene_labels.parquet"],
                        "detections": ["detections.npy", "detections.parquet"]},
        "static_bias": {"scuba": "test_scuba.txt", "scufo": "test_scufo.txt", "scufo_videos": SCUFO_DIR,
                        "scufo_frame": "one frame of the SCUBA clip, uniform over its frames (videos.csv "
                                       "still_frame), decoded and re-encoded losslessly",
                        "pairing": "a SCUFO clip has its SCUBA clip's video id (and line number)"},
        "libraries": {"python": sys.version.split()[0], "numpy": np.__version__, "pyarrow": pa.__version__,
                      "av": av.__version__},
        "checksums": {
            "note": ("sha256 of every file below. 'files' are byte-identical for the same seed and "
                     "parameters (given the numpy/pyarrow versions); 'videos' also depend on the "
                     "PyAV/libx264 build."),
            "files": {name: sha256_file(root / name) for name in DETERMINISTIC_FILES},
            "videos": {t.rel_path: r.sha256 for t, r in zip(tasks, results, strict=True)},
        },
    }


def write_dataset_files(root: Path, params: SynthParams, tasks: list[VideoTask], results: list[VideoResult],
                        *, pairs: list[int], val_pairs: list[int]) -> dict:
    """Write lists, metadata, SDN inputs, then the manifest last; returns the manifest."""
    write_lists(root, params, tasks)
    write_metadata(root, params, tasks)
    write_sdn_inputs(root, tasks, results)
    manifest = build_manifest(root, params, tasks, results, pairs, val_pairs)
    (root / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return manifest
