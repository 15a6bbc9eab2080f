"""`--format table`: any codebase's per-video scores as one CSV or parquet table (docs/importing.md).

Columns (one row a video): `video_id`, `split` (`test` and `unknown`; optionally `train` and
`val`), `label` (known splits: the class in [0, K); `unknown`: the unknown data set's own class
id), `pred` (the closed-set prediction in [0, K)), `score` (the uncertainty, higher = unknown).
Optional: `logit_0 ... logit_{K-1}` (or a parquet list column `logits`), `feature_0 ...` (or
`features`), `decision` (open-set decisions in [0, K] made without a threshold, K = unknown).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd

from dear_ray.scores.released import (
    CLASS_COUNTS,
    ImportedModel,
    ImportedSplit,
    ScoreImportError,
    class_ids,
    finite,
)

REQUIRED = ("video_id", "split", "label", "pred", "score")
SPLITS = ("train", "val", "test", "unknown")


def _read(path: Path) -> pd.DataFrame:
    if not path.is_file():
        raise ScoreImportError(f"{path}: no such file")
    try:
        if path.suffix.lower() in (".parquet", ".pq"):
            return pd.read_parquet(path)
        return pd.read_csv(path)
    except Exception as err:  # noqa: BLE001 - pandas raises many reader-specific types
        raise ScoreImportError(f"{path}: not a readable {path.suffix or 'CSV'} table ({err})") from None


def _matrix(path: Path, frame: pd.DataFrame, prefix: str) -> np.ndarray | None:
    """`<prefix>_0, <prefix>_1, ...` columns (or one list column `<prefix>s`) as `(N, W)`."""
    numbered = sorted((int(m.group(1)), c) for c in frame.columns if (m := re.fullmatch(rf"{prefix}_(\d+)", str(c))))
    if numbered:
        if [i for i, _ in numbered] != list(range(len(numbered))):
            raise ScoreImportError(f"{path}: columns {prefix}_* must be numbered 0..{len(numbered) - 1}")
        return finite(path, f"{prefix}_*", frame[[c for _, c in numbered]].to_numpy(np.float64), ndim=2)
    if f"{prefix}s" in frame.columns:
        rows = frame[f"{prefix}s"].to_list()
        widths = {len(r) for r in rows}
        if len(widths) != 1:
            raise ScoreImportError(f"{path}: column '{prefix}s' has rows of lengths {sorted(widths)}")
        return finite(path, f"{prefix}s", np.asarray(rows, dtype=np.float64), ndim=2)
    return None


def read_score_table(path: str | Path, *, known_set: str = "ucf101", unknown_set: str,
                     threshold: float | None = None) -> ImportedModel:
    """Read and check one score table (no store is written); `threshold` is in the score's units."""
    path = Path(path)
    frame = _read(path)
    missing = [c for c in REQUIRED if c not in frame.columns]
    if missing:
        raise ScoreImportError(f"{path}: no column {missing[0]!r} (a score table needs {', '.join(REQUIRED)}; "
                               f"it has {', '.join(map(str, frame.columns))})")
    splits = frame["split"].astype(str)
    unknown_splits = sorted(set(splits) - set(SPLITS))
    if unknown_splits:
        raise ScoreImportError(f"{path}: column 'split' has value {unknown_splits[0]!r}; expected one of "
                               f"{', '.join(SPLITS)}")
    for need in ("test", "unknown"):
        if need not in set(splits):
            raise ScoreImportError(f"{path}: column 'split' has no {need!r} rows")
    logits = _matrix(path, frame, "logit")
    k = CLASS_COUNTS.get(known_set) or (logits.shape[1] if logits is not None else
                                        int(max(frame["label"][splits != "unknown"].max(), frame["pred"].max())) + 1)
    if logits is not None and logits.shape[1] != k:
        raise ScoreImportError(f"{path}: {logits.shape[1]} logit columns, the known set {known_set} has {k} classes")
    features = _matrix(path, frame, "feature")
    scores = finite(path, "score", frame["score"].to_numpy(), ndim=1).astype(np.float64)
    preds = class_ids(path, "pred", frame["pred"].to_numpy(), k, f"predictions of a {k}-class model")
    decisions = None
    if "decision" in frame.columns:
        decisions = class_ids(path, "decision", frame["decision"].to_numpy(), k + 1,
                              f"decisions over {k} classes + unknown")
    out = {}
    for split in SPLITS:
        rows = (splits == split).to_numpy()
        if not rows.any():
            continue
        if split == "unknown":
            upper, what = CLASS_COUNTS.get(unknown_set), f"the unknown set {unknown_set}"
        else:
            upper, what = k, f"the known set {known_set}"
        labels = class_ids(path, "label", frame["label"].to_numpy()[rows], upper, f"{split} rows; {what}")
        out[split] = ImportedSplit(
            labels=labels, preds=preds[rows], scores=scores[rows],
            decisions=None if decisions is None else decisions[rows],
            logits=None if logits is None else logits[rows], features=None if features is None else features[rows],
            video_ids=frame["video_id"].astype(str).to_numpy(dtype=object)[rows])
    value = None if threshold is None else float(threshold)
    return ImportedModel(path=path, layout="table", score="score", splits=out, num_known=k, threshold=value,
                         threshold_given=threshold)
