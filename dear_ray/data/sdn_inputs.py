"""SDN side inputs: scene pseudo-labels, human detections, and human masking (docs/methods.md#sdn).

Two on-disk layouts are read, chosen by the file suffix:

``.npy`` (SDN's own files, a pickled dict; loaded with ``allow_pickle=True`` ONLY because the user
named the path, so never point this at an untrusted file):

- scene labels: ``{class_name: {video_id: {"pred_cls": int or [T], "probs": [P] or [T, P]}}}``;
- detections: ``{class_name: {video_id: {frame (1-based int): {"human_boxes": [N, 5]}}}}``, box
  rows ``x1, y1, x2, y2, score`` in pixels of the decoded frame.

``.parquet`` (no pickle; the synthetic generator writes these):

- scene labels, one row per video: ``video_id`` (string), ``class_name`` (string), ``pred_cls``
  (int64), ``probs`` (list<float32>, length P, the same P on every row);
- detections, one row per box: ``video_id`` (string), ``class_name`` (string), ``frame`` (int64,
  1-based), ``x1``, ``y1``, ``x2``, ``y2``, ``score`` (float32). A video or frame without boxes has
  no rows.

Loaded forms (what `VideoDataset` takes): ``scene[video_id] -> float32 (P,)`` (``[T, P]`` probs are
averaged over T; SDN's soft label) or, with ``kind="hard"``, an int64 scene class (the mode of the
per-frame ``pred_cls``, ties to the smallest class: SDN datasets/kinetics.py ``Kinetics_adv``,
``np.bincount(pred_cls).argmax()``), and ``detections[video_id][frame (1-based)] -> float32 (N, 5)``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

SCENE_COLUMNS = ("video_id", "class_name", "pred_cls", "probs")
DETECTION_COLUMNS = ("video_id", "class_name", "frame", "x1", "y1", "x2", "y2", "score")


def _load_pickled_dict(path: Path) -> dict:
    obj = np.load(path, allow_pickle=True)
    if isinstance(obj, np.ndarray) and obj.dtype == object and obj.shape == ():
        obj = obj.item()
    if not isinstance(obj, dict):
        raise ValueError(f"{path}: expected a pickled dict {{class: {{video_id: ...}}}}, got {type(obj).__name__}")
    return obj


def _read_table(path: Path, columns: tuple[str, ...]):
    table = pq.read_table(path)
    missing = [c for c in columns if c not in table.column_names]
    if missing:
        raise ValueError(f"{path}: missing columns {missing}; expected {list(columns)}")
    return table


def _suffix(path: Path) -> str:
    if not path.is_file():
        raise FileNotFoundError(f"SDN side-input file {path} does not exist")
    suffix = path.suffix.lower()
    if suffix not in (".npy", ".parquet"):
        raise ValueError(f"{path}: unsupported suffix {suffix!r}; expected .npy or .parquet")
    return suffix


def _scene_vector(probs, where: str) -> np.ndarray:
    arr = np.asarray(probs, dtype=np.float32)
    if arr.ndim == 2:
        arr = arr.mean(axis=0)
    if arr.ndim != 1 or arr.size == 0:
        raise ValueError(f"{where}: 'probs' must have shape [P] or [T, P], got {np.shape(probs)}")
    return arr


def hard_scene_label(pred_cls, where: str = "pred_cls") -> np.int64:
    """SDN's hard scene label: an int as it is; per-frame classes ``[T]`` -> their mode, ties to
    the smallest class (``np.bincount(pred_cls).argmax()``, SDN datasets/kinetics.py)."""
    arr = np.asarray(pred_cls)
    if arr.ndim == 0:
        return np.int64(arr)
    if arr.ndim != 1 or arr.size == 0 or arr.dtype.kind not in "iu" or arr.min() < 0:
        raise ValueError(f"{where}: 'pred_cls' must be a class index or [T] indices >= 0, got {arr!r}")
    return np.int64(np.bincount(arr).argmax())


def load_scene_labels(path: str | Path, kind: str = "soft") -> dict[str, np.ndarray]:
    """Scene pseudo-labels per video.

    Args:
        path: ``.npy`` (SDN pickle) or ``.parquet`` file, layouts in the module docstring.
        kind: ``soft`` (the ``probs``, averaged over frames) or ``hard`` (`hard_scene_label` of
            ``pred_cls``), as the SDN head's ``scene_labels`` option.

    Returns:
        ``{video_id: float32 (P,)}`` (soft) or ``{video_id: int64 scalar}`` (hard).

    Raises:
        ValueError: wrong layout, missing column, a video listed twice, or P differing between videos.
    """
    if kind not in ("soft", "hard"):
        raise ValueError(f"scene label kind must be 'soft' or 'hard', got {kind!r}")
    path = Path(path)
    out: dict[str, np.ndarray] = {}

    def put(video_id: str, probs, pred_cls, where: str) -> None:
        if video_id in out:
            raise ValueError(f"{where}: video {video_id!r} has scene labels twice")
        if kind == "hard":
            out[video_id] = hard_scene_label(pred_cls, where)
            return
        vec = _scene_vector(probs, where)
        first = next(iter(out.values()), None)
        if first is not None and first.shape != vec.shape:
            raise ValueError(f"{where}: {vec.size} scene classes, other videos have {first.size}")
        out[video_id] = vec

    key = "probs" if kind == "soft" else "pred_cls"
    if _suffix(path) == ".npy":
        for cls, videos in _load_pickled_dict(path).items():
            for video_id, entry in videos.items():
                where = f"{path} [{cls!r}][{video_id!r}]"
                if not isinstance(entry, dict) or key not in entry:
                    raise ValueError(f"{where}: expected a dict with key {key!r}")
                put(str(video_id), entry.get("probs"), entry.get("pred_cls"), where)
    else:
        table = _read_table(path, SCENE_COLUMNS)
        for i, (vid, probs, pred) in enumerate(zip(table["video_id"].to_pylist(),
                                                   table["probs"].to_pylist(),
                                                   table["pred_cls"].to_pylist())):
            put(str(vid), probs, pred, f"{path} row {i}")
    return out


def load_detections(path: str | Path) -> dict[str, dict[int, np.ndarray]]:
    """Human boxes per video and 1-based frame.

    Args:
        path: ``.npy`` (SDN pickle) or ``.parquet`` file, layouts in the module docstring.

    Returns:
        ``{video_id: {frame (1-based): float32 (N, 5) x1, y1, x2, y2, score}}``.

    Raises:
        ValueError: wrong layout, missing column, a frame number < 1, or boxes not (N, 5).
    """
    path = Path(path)
    out: dict[str, dict[int, np.ndarray]] = {}
    if _suffix(path) == ".npy":
        for cls, videos in _load_pickled_dict(path).items():
            for video_id, frames in videos.items():
                per_frame = out.setdefault(str(video_id), {})
                for frame, entry in frames.items():
                    where = f"{path} [{cls!r}][{video_id!r}][{frame!r}]"
                    if int(frame) < 1:
                        raise ValueError(f"{where}: frame numbers are 1-based, got {frame}")
                    boxes = np.asarray(entry["human_boxes"], dtype=np.float32)
                    if boxes.size == 0:
                        boxes = boxes.reshape(0, 5)
                    if boxes.ndim != 2 or boxes.shape[1] != 5:
                        raise ValueError(f"{where}: 'human_boxes' must be (N, 5), got {boxes.shape}")
                    per_frame[int(frame)] = boxes
        return out
    table = _read_table(path, DETECTION_COLUMNS)
    frames = np.asarray(table["frame"].to_numpy(zero_copy_only=False), dtype=np.int64)
    if frames.size and frames.min() < 1:
        row = int(np.argmin(frames))
        raise ValueError(f"{path} row {row}: frame numbers are 1-based, got {frames[row]}")
    boxes = np.stack(
        [np.asarray(table[c].to_numpy(zero_copy_only=False), dtype=np.float32) for c in DETECTION_COLUMNS[3:]],
        axis=1,
    )
    grouped: dict[tuple[str, int], list[int]] = {}
    for i, (vid, frame) in enumerate(zip(table["video_id"].to_pylist(), frames.tolist())):
        grouped.setdefault((str(vid), frame), []).append(i)
    for (vid, frame), rows in grouped.items():
        out.setdefault(vid, {})[frame] = boxes[rows]
    return out


def mask_humans(
    frames: np.ndarray,
    frame_indices: np.ndarray,
    boxes: dict[int, np.ndarray],
    *,
    score_threshold: float = 0.3,
) -> np.ndarray:
    """Fill each human box with its frame's mean colour (SDN's human-mask input).

    Args:
        frames: uint8 (N, H, W, 3) decoded frames; not modified.
        frame_indices: 0-based decoder indices (N,) of `frames` (detections are keyed 1-based).
        boxes: one video's detections, ``{frame (1-based): (M, 5) x1, y1, x2, y2, score}``.
        score_threshold: boxes scoring below it are left alone.

    Returns:
        A masked copy, uint8 (N, H, W, 3). The mean colour is the per-channel mean of the whole
        unmasked frame (rounded); a box covers rows ``floor(y1)..ceil(y2)`` and columns
        ``floor(x1)..ceil(x2)`` (exclusive ends), clipped to the frame.
    """
    out = frames.copy()
    H, W = frames.shape[1:3]
    for n, idx in enumerate(np.asarray(frame_indices).tolist()):
        frame_boxes = boxes.get(idx + 1)
        if frame_boxes is None or len(frame_boxes) == 0:
            continue
        colour = np.rint(frames[n].reshape(-1, 3).mean(axis=0)).astype(np.uint8)
        for x1, y1, x2, y2, score in frame_boxes:
            if score < score_threshold:
                continue
            r0, r1 = max(int(np.floor(y1)), 0), min(int(np.ceil(y2)), H)
            c0, c1 = max(int(np.floor(x1)), 0), min(int(np.ceil(x2)), W)
            if r1 > r0 and c1 > c0:
                out[n, r0:r1, c0:c1] = colour
    return out


def mask_eligible(
    boxes: dict[int, np.ndarray],
    num_frames: int,
    *,
    min_human_fraction: float = 0.7,
    min_box_score: float = 0.3,
) -> bool:
    """Whether a video may give SDN's masked clips (datasets/kinetics.py ``is_video_valid_det``).

    A frame counts when at least one of its boxes scores STRICTLY above `min_box_score`; the video
    is eligible when ``counted / num_frames >= min_human_fraction`` (`num_frames`: the video's
    length, so frames without a detections entry count as frames without a human).

    Args:
        boxes: one video's detections ``{frame (1-based): (M, 5)}``.
        num_frames: frames in the video (> 0).
    """
    if num_frames < 1:
        raise ValueError(f"mask_eligible: num_frames must be >= 1, got {num_frames}")
    counted = sum(1 for b in boxes.values() if len(b) and bool(np.any(np.asarray(b)[:, 4] > min_box_score)))
    return counted / num_frames >= min_human_fraction
