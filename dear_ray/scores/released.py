"""Import another codebase's score files as dear_ray score stores (docs/importing.md).

`--format dear`: the `.npz` files DEAR (Cogito2012/DEAR `experiments/ood_detection.py`,
`baseline_*.py`) and PSL (Jun-CEN/PSL `evaluation_code/experiments/tsm/`) keep per model and
unknown set, one array per key; the layout is detected from the keys:

- `unctt`: `ind_unctt`, `ood_unctt` (uncertainty, higher = unknown), `ind_pred`, `ood_pred`,
  `ind_label`, `ood_label` (+ `ind_conf` / `ood_conf`, not read). A 2-D `*_unctt` (PSL's
  scratch BNN / DEAR files) gives its column `column` (0, as PSL's scratch scripts read it).
  Score `uncertainty`, whatever the producer computed (BALD, vacuity, PSL's distance...).
- `softmax`: `ind_softmax`, `ood_softmax` `(N, K)` probabilities (DEAR's SoftMax and RPL
  baselines): score `msp` = `1 - max p` computed in the file's precision (as the released
  `1 - confs`), prediction `argmax p`.
- `openmax`: `ind_openmax`, `ood_openmax` `(N, K+1)`: score `openmax` = P(unknown) (column K),
  prediction the argmax over the K known columns, decision the argmax over all K+1 (K =
  unknown: DEAR's `compare_openness_new.py` `score='binary'`).

A file holding two layouts (DEAR's `*_OpenMax_*_result.npz` has `ind_softmax` and `ind_openmax`)
needs `layout`. Rows keep the file's order (video ids `000000`, `000001`, ...: sorting them gives
the file order back), duplicates included: DEAR's multi-GPU tests padded some files with
repeated videos (3784 or 3792 known rows for UCF-101's 3783), and the released scores count them.

Thresholds are taken as the released scripts take them on their command line (DEAR's
`run_openness.sh`): on the uncertainty (`unctt`, `openmax`) or on the max softmax probability
(`softmax`: reject `max p < T`, stored as `1 - T` on the `msp` score). numpy compares a Python
float with a float32 array in float32, so the stored threshold is T rounded to the file's
precision (`StoreMeta.extra["threshold_given"]` keeps T as typed).
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dear_ray.scores.store import IMPORTED_KEY, StoreMeta, write_score_store

LAYOUTS = {
    "unctt": ("ind_unctt", "ood_unctt", "ind_pred", "ood_pred", "ind_label", "ood_label"),
    "softmax": ("ind_softmax", "ood_softmax", "ind_label", "ood_label"),
    "openmax": ("ind_openmax", "ood_openmax", "ind_label", "ood_label"),
}
SCORE_OF_LAYOUT = {"unctt": "uncertainty", "softmax": "msp", "openmax": "openmax"}
# classes of the data sets whose ids an imported file uses (DEAR's and PSL's lists)
CLASS_COUNTS = {"ucf101": 101, "hmdb51": 51, "mit_v2": 305}
IMPORTED_HEAD = "imported"


class ScoreImportError(ValueError):
    """A score file that cannot be imported; one line naming the file, the key and the value."""


@dataclass(frozen=True)
class ImportedSplit:
    """One split of an imported file, in the file's row order.

    Attributes:
        labels: `(N,)` class ids; preds: `(N,)` closed-set predictions in [0, K).
        scores: `(N,)` float64 uncertainty (higher = unknown).
        decisions: `(N,)` open-set decisions in [0, K] made without a threshold, or None.
        logits, features: `(N, K)`, `(N, F)` or None.
        video_ids: `(N,)` strings, or None (row numbers are used).
    """

    labels: np.ndarray
    preds: np.ndarray
    scores: np.ndarray
    decisions: np.ndarray | None = None
    logits: np.ndarray | None = None
    features: np.ndarray | None = None
    video_ids: np.ndarray | None = None


@dataclass(frozen=True)
class ImportedModel:
    """One imported file: its splits (`test`, `unknown`, optionally `train` / `val`), the score's
    name, layout and precision, and the threshold in the score's units (or None)."""

    path: Path
    layout: str
    score: str
    splits: dict[str, ImportedSplit]
    num_known: int
    threshold: float | None = None
    threshold_given: float | None = None
    score_dtype: str = "float64"


def detect_layout(keys, path, layout: str = "auto") -> str:
    """The file's layout from its keys (`layout` names one when the file holds several)."""
    keys = set(keys)
    if layout != "auto":
        if layout not in LAYOUTS:
            raise ScoreImportError(f"{path}: layout {layout!r}; expected auto or one of {', '.join(LAYOUTS)}")
        missing = [k for k in LAYOUTS[layout] if k not in keys]
        if missing:
            raise ScoreImportError(f"{path}: no key {missing[0]!r} for layout {layout!r} (it needs "
                                   f"{', '.join(LAYOUTS[layout])}; the file has {', '.join(sorted(keys))})")
        return layout
    found = [name for name, need in LAYOUTS.items() if need[0] in keys]
    if len(found) > 1:
        raise ScoreImportError(f"{path}: holds the layouts {' and '.join(found)}; name one with --layout")
    if not found:
        raise ScoreImportError(f"{path}: no key 'ind_unctt', 'ind_softmax' or 'ind_openmax' (the file has "
                               f"{', '.join(sorted(keys)) or 'no arrays'}); see docs/importing.md")
    missing = [k for k in LAYOUTS[found[0]] if k not in keys]
    if missing:
        raise ScoreImportError(f"{path}: no key {missing[0]!r} (layout {found[0]} needs "
                               f"{', '.join(LAYOUTS[found[0]])}; the file has {', '.join(sorted(keys))})")
    return found[0]


def _load_npz(path: Path) -> dict[str, np.ndarray]:
    if not path.is_file():
        raise ScoreImportError(f"{path}: no such file")
    try:
        data = np.load(path, allow_pickle=False)
    except (OSError, zipfile.BadZipFile, EOFError, ValueError) as err:
        raise ScoreImportError(f"{path}: not a readable .npz file ({err})") from None
    if not isinstance(data, np.lib.npyio.NpzFile):
        raise ScoreImportError(f"{path}: a single .npy array, not an .npz file of named arrays")
    with data:
        arrays = {}
        for key in data.files:
            try:
                arrays[key] = data[key]
            except ValueError:  # an object array: pickled Python objects are never loaded
                raise ScoreImportError(f"{path}: key {key!r} holds Python objects (a pickle); only numeric "
                                       "arrays are read") from None
            except (OSError, zipfile.BadZipFile, EOFError) as err:
                raise ScoreImportError(f"{path}: key {key!r} cannot be read ({err})") from None
        return arrays


def finite(path, key: str, values, *, ndim: int) -> np.ndarray:
    """`values` as a finite float array of `ndim` dimensions, or an error naming file and key."""
    arr = np.asarray(values)
    if arr.dtype.kind not in "fiu" or arr.ndim != ndim:
        raise ScoreImportError(f"{path}: key {key!r} has dtype {arr.dtype} and shape {arr.shape}; expected a "
                               f"{ndim}-D numeric array")
    bad = ~np.isfinite(arr)
    if bad.any():
        first = np.unravel_index(int(np.argmax(bad)), arr.shape)[0]
        raise ScoreImportError(f"{path}: key {key!r} has {int(bad.sum())} NaN/inf value(s), first at row {first} "
                               f"({arr.reshape(arr.shape[0], -1)[first].tolist()[:4]})")
    return arr


def class_ids(path, key: str, values, upper: int | None, what: str) -> np.ndarray:
    """`values` as int64 class ids in [0, upper) (>= 0 when `upper` is None)."""
    arr = np.asarray(values)
    if arr.ndim != 1 or arr.dtype.kind not in "fiub":
        raise ScoreImportError(f"{path}: key {key!r} has dtype {arr.dtype} and shape {arr.shape}; expected 1-D "
                               "integer class ids")
    if arr.dtype.kind == "f":
        bad = ~np.isfinite(arr) | (arr != np.round(arr))
        if bad.any():
            i = int(np.argmax(bad))
            raise ScoreImportError(f"{path}: key {key!r} has the non-integer class id {arr[i]} at row {i}")
    arr = arr.astype(np.int64)
    low = arr < 0
    high = arr >= upper if upper is not None else np.zeros_like(low)
    if arr.size and (low.any() or high.any()):
        i = int(np.argmax(low | high))
        bound = f"[0, {upper})" if upper is not None else ">= 0"
        raise ScoreImportError(f"{path}: key {key!r} has value {arr[i]} at row {i}, outside {bound} ({what})")
    return arr


def same_rows(path, **arrays: np.ndarray) -> None:
    """An error naming the two keys when the arrays' row counts differ."""
    items = list(arrays.items())
    for key, arr in items[1:]:
        if len(arr) != len(items[0][1]):
            raise ScoreImportError(f"{path}: key {key!r} has {len(arr)} rows, key {items[0][0]!r} has "
                                   f"{len(items[0][1])}")


def _class_limits(known_set: str, unknown_set: str, width: int | None) -> tuple[int | None, int | None]:
    k = CLASS_COUNTS.get(known_set, width)
    return k, CLASS_COUNTS.get(unknown_set)


def read_dear_npz(path: str | Path, *, known_set: str = "ucf101", unknown_set: str, layout: str = "auto",
                  threshold: float | None = None, column: int = 0) -> ImportedModel:
    """Read and check one DEAR / PSL result file (no store is written).

    Args:
        path: the `.npz` file.
        known_set, unknown_set: the data sets its `ind_*` / `ood_*` rows come from; a set of
            `CLASS_COUNTS` bounds its labels (UCF-101: 101 classes, HMDB-51: 51, MiT-v2: 305).
        layout: `auto` (from the keys) or one of `LAYOUTS`.
        threshold: the method's released threshold as its script takes it (module docstring).
        column: the column of a 2-D `*_unctt`.

    Raises:
        ScoreImportError: a missing key, mismatched lengths, NaN, a label or prediction out of range.
    """
    path = Path(path)
    arrays = _load_npz(path)
    layout = detect_layout(arrays, path, layout)
    width = None
    if layout != "unctt":
        first = f"ind_{layout}"
        width = finite(path, first, arrays[first], ndim=2).shape[1] - (layout == "openmax")
    k, u = _class_limits(known_set, unknown_set, width)
    if layout == "unctt" and k is None:
        k = int(max(np.max(arrays["ind_label"]), np.max(arrays["ind_pred"]), np.max(arrays["ood_pred"]))) + 1
    if width is not None and width != k:
        raise ScoreImportError(f"{path}: key 'ind_{layout}' has {width} class columns, the known set {known_set} "
                               f"has {k} classes")
    splits, dtype = {}, "float64"
    for split, side, upper, what in (("test", "ind", k, f"the known set {known_set} has {k} classes"),
                                     ("unknown", "ood", u, f"the unknown set {unknown_set} has {u} classes")):
        labels = class_ids(path, f"{side}_label", arrays[f"{side}_label"], upper, what)
        if layout == "unctt":
            key = f"{side}_unctt"
            raw = arrays[key]
            if raw.ndim == 2 and 0 <= column < raw.shape[1]:
                raw = raw[:, column]
            values = finite(path, key, raw, ndim=1)
            preds = class_ids(path, f"{side}_pred", arrays[f"{side}_pred"], k,
                              f"predictions of a {k}-class model")
            same_rows(path, **{f"{side}_label": labels, key: values, f"{side}_pred": preds})
            split_data = ImportedSplit(labels=labels, preds=preds, scores=values.astype(np.float64))
        else:
            key = f"{side}_{layout}"
            probs = finite(path, key, arrays[key], ndim=2)
            if probs.shape[1] != width + (layout == "openmax"):
                raise ScoreImportError(f"{path}: key {key!r} has {probs.shape[1]} columns, key 'ind_{layout}' has "
                                       f"{width + (layout == 'openmax')}")
            same_rows(path, **{f"{side}_label": labels, key: probs})
            values = probs.dtype.type(1) - probs.max(axis=1) if layout == "softmax" else probs[:, k]
            split_data = ImportedSplit(labels=labels, preds=probs[:, :k].argmax(axis=1).astype(np.int64),
                                       scores=np.asarray(values, dtype=np.float64),
                                       decisions=probs.argmax(axis=1).astype(np.int64) if layout == "openmax" else None)
        splits[split] = split_data
        dtype = str(values.dtype)
    return ImportedModel(path=path, layout=layout, score=SCORE_OF_LAYOUT[layout], splits=splits, num_known=k,
                         threshold=released_threshold(threshold, layout, dtype), threshold_given=threshold,
                         score_dtype=dtype)


def released_threshold(threshold: float | None, layout: str, dtype: str) -> float | None:
    """The stored threshold (reject `score > it`) of a threshold T given as the released scripts
    take it: T in the scores' precision; for `softmax` (reject `max p < T`) `1 - T`, exact in
    float64 for T >= 0.5."""
    if threshold is None:
        return None
    value = float(np.asarray(threshold, dtype=dtype))
    if not np.isfinite(value):
        raise ScoreImportError(f"threshold {threshold!r}: expected a finite number")
    return 1.0 - value if layout == "softmax" else value


def _video_ids(n: int) -> np.ndarray:
    width = max(6, len(str(max(n - 1, 0))))
    return np.array([f"{i:0{width}d}" for i in range(n)], dtype=object)


def write_imported(model: ImportedModel, out_dir: str | Path, *, method: str, run: str, known_set: str,
                   unknown_set: str, backbone: str | None = None, fmt: str = "dear") -> list[Path]:
    """Write `model`'s splits as stores `<out_dir>/<run>/<split>.parquet` (the unknown split:
    `unknown_<unknown_set>.parquet`) and return their paths."""
    extra = {IMPORTED_KEY: str(model.path), "format": fmt, "layout": model.layout, "score": model.score,
             "score_dtype": model.score_dtype}
    if model.threshold_given is not None:
        extra["threshold_given"] = repr(model.threshold_given)
    if fmt == "dear" and unknown_set == "hmdb51":
        extra["class_order"] = "mmaction2"  # DEAR's and PSL's HMDB-51 lists: sorted class folders
    if backbone:
        extra["backbone"] = backbone
    written = []
    for split, data in model.splits.items():
        meta = StoreMeta(split=split, dataset=unknown_set if split == "unknown" else known_set,
                         num_known=model.num_known, head=IMPORTED_HEAD, checkpoint=str(model.path), method=method,
                         run=run, extra=extra, threshold=model.threshold)
        name = f"unknown_{unknown_set}" if split == "unknown" else split
        ids = data.video_ids if data.video_ids is not None else _video_ids(len(data.labels))
        written.append(write_score_store(
            Path(out_dir) / run / f"{name}.parquet", video_ids=ids, labels=data.labels, logits=data.logits,
            features=data.features, scores={model.score: data.scores}, meta=meta, preds=data.preds,
            decisions=data.decisions))
    return written
