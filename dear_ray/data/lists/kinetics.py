"""Kinetics-400 and Mini-Kinetics-200 lists."""

from __future__ import annotations

import csv
import warnings
from pathlib import Path

from dear_ray.data.lists._common import (
    DATASETS,
    ListBuildError,
    PathLike,
    _check_split,
    _Entry,
    _find,
    _int,
    _lines,
    _load_json,
    _require,
    _videos,
    _write_all,
)


@DATASETS.register("kinetics400")
def build_kinetics400_lists(root: PathLike, out_dir: PathLike, *, split: int = 1,
                            train_annotations: PathLike | None = None,
                            val_annotations: PathLike | None = None,
                            train_videos: PathLike | None = None, val_videos: PathLike | None = None,
                            class_folders: bool = True, relative_to: PathLike | None = None,
                            skip_missing: bool = False) -> dict[str, Path]:
    """Kinetics-400 from its CSV or JSON annotations (classes: sorted training labels).

    Args:
        class_folders: videos lie in `<label>/` folders (spaces as `_`, MMAction2's layout);
            False: all videos of a split in one folder.
    """
    return _build_kinetics("kinetics400", Path(root), out_dir, split, train_annotations,
                           val_annotations, train_videos, val_videos, class_folders, relative_to,
                           skip_missing, id_lists=None)


@DATASETS.register("minikinetics200")
def build_minikinetics200_lists(root: PathLike, out_dir: PathLike, *, split: int = 1,
                                train_annotations: PathLike | None = None,
                                val_annotations: PathLike | None = None,
                                train_ids: PathLike | None = None, val_ids: PathLike | None = None,
                                train_videos: PathLike | None = None,
                                val_videos: PathLike | None = None, class_folders: bool = True,
                                relative_to: PathLike | None = None,
                                skip_missing: bool = False) -> dict[str, Path]:
    """Mini-Kinetics-200: the Kinetics-400 videos whose ids are in `train/val_ytid_list.txt`."""
    root = Path(root)
    ids = []
    for given, name in ((train_ids, "train_ytid_list.txt"), (val_ids, "val_ytid_list.txt")):
        path = Path(given) if given else _find(root, [name, f"annotations/{name}"],
                                               "Mini-Kinetics-200 id list")
        ids.append(_read_ids(_require(path, "Mini-Kinetics-200 id list")))
    return _build_kinetics("minikinetics200", root, out_dir, split, train_annotations,
                           val_annotations, train_videos, val_videos, class_folders, relative_to,
                           skip_missing, id_lists=tuple(ids))




def _build_kinetics(prefix, root, out_dir, split, train_ann, val_ann, train_videos, val_videos,
                    class_folders, relative_to, skip_missing, id_lists):
    _check_split(split, (1,), prefix)
    candidates = {"train": ["annotations/kinetics_train.csv", "annotations/train.csv",
                            "kinetics_train.csv", "train.csv", "annotations/kinetics_train.json",
                            "kinetics_train.json"],
                  "val": ["annotations/kinetics_val.csv", "annotations/validate.csv",
                          "kinetics_val.csv", "validate.csv", "annotations/kinetics_val.json",
                          "kinetics_val.json"]}
    rows = {}
    for subset, given in (("train", train_ann), ("val", val_ann)):
        path = Path(given) if given else _find(root, candidates[subset],
                                               f"Kinetics {subset} annotations")
        rows[subset] = _read_kinetics(_require(path, f"Kinetics {subset} annotations"))
    if id_lists is not None:
        for subset, wanted in zip(("train", "val"), id_lists, strict=True):
            found = [r for r in rows[subset] if r[1] in wanted]
            missing = len(wanted) - len({r[1] for r in found})
            if missing:
                warnings.warn(f"{prefix}: {missing} of {len(wanted)} {subset} ids are not in the "
                              "Kinetics annotations; they are left out", stacklevel=3)
            rows[subset] = found
    names = sorted({r[0] for r in rows["train"]})
    if not names:
        raise ListBuildError(f"{prefix}: no labelled training videos in the annotations")
    mapping = {n: i for i, n in enumerate(names)}

    def entries(subset: str) -> list[_Entry]:
        out = []
        for label, ytid, start, end, where in rows[subset]:
            if label not in mapping:
                raise ListBuildError(f"{where}: label {label!r} does not occur in the training "
                                     "annotations")
            name = f"{ytid}_{start:06d}_{end:06d}.mp4"
            folder = label.replace(" ", "_") + "/" if class_folders else ""
            out.append(_Entry(folder + name, mapping[label], where))
        return out

    train_dir = _videos(root, train_videos, ["videos_train", "train"])
    val_dir = _videos(root, val_videos, ["videos_val", "val"])
    return _write_all(out_dir, prefix, "list", names, (entries("train"), train_dir),
                      (entries("val"), val_dir), relative_to, skip_missing)


def _read_kinetics(path: Path) -> list[tuple[str, str, int, int, str]]:
    """(label, youtube_id, start s, end s, where) of every labelled row of a CSV or JSON file."""
    out = []
    if path.suffix == ".json":
        data = _load_json(path)
        if not isinstance(data, dict):
            raise ListBuildError(f"{path}: expected {{youtube_id: {{'annotations': ...}}}}")
        for ytid, item in data.items():
            where = f"{path}: entry {ytid!r}"
            ann = item.get("annotations") if isinstance(item, dict) else None
            seg = ann.get("segment") if isinstance(ann, dict) else None
            if not isinstance(seg, list) or len(seg) != 2:
                raise ListBuildError(f"{where}: expected 'annotations': {{'label', 'segment': "
                                     f"[start, end]}}, got {item!r}")
            if ann.get("label"):
                out.append((str(ann["label"]).replace('"', ""), ytid, int(float(seg[0])),
                            int(float(seg[1])), where))
        return out
    with path.open(newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        need = {"label", "youtube_id", "time_start", "time_end"}
        if not need <= set(reader.fieldnames or ()):
            raise ListBuildError(f"{path}:1: expected a header with {sorted(need)}, got "
                                 f"{reader.fieldnames}")
        for lineno, row in enumerate(reader, start=2):
            where = f"{path}:{lineno}"
            label = (row["label"] or "").replace('"', "").strip()
            if not label:
                continue  # the test set carries no labels
            start = _int(row["time_start"], "time_start", where, as_float=True)
            end = _int(row["time_end"], "time_end", where, as_float=True)
            out.append((label, row["youtube_id"].strip(), start, end, where))
    return out


def _read_ids(path: Path) -> set[str]:
    return {fields[0] for _, fields in _lines(path)}
