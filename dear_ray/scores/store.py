"""The score store: one model's outputs on one split, saved once as parquet (docs/metrics.md).

Columns: `video_id` (string), `label` (int64), `pred` (int64, argmax of the logits), `logits`
(fixed_size_list<float32>[K]), optional `features` (fixed_size_list<float32>[F]), optional
`sample_logits` (fixed_size_list<float32>[S*K], the S stochastic passes of a video, pass-major),
and one float64 column `score.<name>` per uncertainty score. `StoreMeta` is JSON in the schema
metadata under the key `dear_ray`. Every metric reads these files; nothing re-runs a model.

Imported stores (`dear_ray.scores.released`: another codebase's score files, docs/importing.md)
may have no `logits`: their `pred` is the file's closed-set prediction, and an optional
`decision` column (int64 in [0, K], K = unknown) holds open-set decisions made without a
threshold (OpenMax's argmax over K+1 classes). `StoreMeta.threshold` carries a method's
released threshold, and `StoreMeta.extra["imported_from"]` the source file.

Labels: known splits (`train`, `val`, `test`, `test_shifted`, and the static-bias splits
`test_scuba` / `test_scufo`, StillMix's SCUBA / SCUFO) carry labels in [0, K); the `unknown` split
carries the unknown data set's own class ids (>= 0), used to draw class subsets. A `test_scufo`
video pairs with the `test_scuba` video of the same `video_id` (`dear_ray.metrics.static_bias`).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from dear_ray.splits import KNOWN_SPLITS, UNKNOWN_SPLIT, VAL_UNKNOWN_SPLIT

STORE_FORMAT = 1
META_KEY = b"dear_ray"
SCORE_PREFIX = "score."
_REQUIRED = ("video_id", "label", "pred")
IMPORTED_KEY = "imported_from"  # StoreMeta.extra key of an imported store's source file


class ScoreStoreError(ValueError):
    """A score store that cannot be written or read; the message names the file and the problem."""


@dataclass(frozen=True)
class StoreMeta:
    """What a store holds, saved in the parquet schema metadata.

    Attributes:
        split: `train`, `val`, `test`, `test_shifted`, `test_scuba`, `test_scufo` or `unknown`.
        dataset: the data set the videos come from (the unknown data set for `unknown`).
        num_known: K, the number of known classes the model was trained on.
        head: the trained head (`softmax`, `bnn`, `rpl`, `edl`, `edl_avu`, `dear`, `dear_alt`, `sdn`).
        checkpoint: the checkpoint the outputs come from.
        method: the method name used in results tables (default: the head).
        run: the trial / model name; stores of one model share it (default: the checkpoint).
        extra: free-form string attributes (backbone, seed, ...; `imported_from`: the file an
            imported store was read from).
        threshold: the method's released rejection threshold in the score's units (reject
            `score > threshold`), for stores imported without a training split; None otherwise.
    """

    split: str
    dataset: str
    num_known: int
    head: str
    checkpoint: str
    method: str = ""
    run: str = ""
    extra: Mapping[str, str] = field(default_factory=dict)
    threshold: float | None = None

    def __post_init__(self) -> None:
        if self.split not in KNOWN_SPLITS + (UNKNOWN_SPLIT, VAL_UNKNOWN_SPLIT):
            raise ScoreStoreError(f"StoreMeta.split={self.split!r}; expected one of "
                                  f"{', '.join(KNOWN_SPLITS + (UNKNOWN_SPLIT, VAL_UNKNOWN_SPLIT))}")
        if isinstance(self.num_known, bool) or not isinstance(self.num_known, (int, np.integer)) \
                or self.num_known < 1:
            raise ScoreStoreError(f"StoreMeta.num_known={self.num_known!r}; expected a positive int")
        for name in ("dataset", "head", "checkpoint", "method", "run"):
            if not isinstance(getattr(self, name), str):
                raise ScoreStoreError(f"StoreMeta.{name}={getattr(self, name)!r}; expected a string")
        object.__setattr__(self, "num_known", int(self.num_known))
        object.__setattr__(self, "method", self.method or self.head)
        object.__setattr__(self, "run", self.run or self.checkpoint)
        object.__setattr__(self, "extra", {str(k): str(v) for k, v in dict(self.extra).items()})
        if self.threshold is not None:
            if isinstance(self.threshold, bool) or not isinstance(self.threshold, (int, float, np.number)) \
                    or not np.isfinite(self.threshold):
                raise ScoreStoreError(f"StoreMeta.threshold={self.threshold!r}; expected a finite number or None")
            object.__setattr__(self, "threshold", float(self.threshold))

    @property
    def imported(self) -> bool:
        """Whether the store was imported from another codebase's score file."""
        return IMPORTED_KEY in self.extra

    def to_json(self) -> str:
        return json.dumps({"format": STORE_FORMAT, **dataclasses.asdict(self)}, sort_keys=True)


@dataclass(frozen=True)
class ScoreStore:
    """A store read back into numpy.

    Attributes:
        path: the parquet file (None for a store built in memory).
        meta: its `StoreMeta`.
        video_ids: `(N,)` strings.
        labels: `(N,)` int64.
        preds: `(N,)` int64 in [0, K): argmax of the logits (an imported store: the file's
            closed-set prediction).
        logits: `(N, K)` float32, views averaged; None for an imported store without them.
        features: `(N, F)` float32 or None.
        sample_logits: `(S, N, K)` float32 or None (stochastic passes).
        scores: name -> `(N,)` float64 uncertainty (higher = more likely unknown).
        decisions: `(N,)` int64 open-set decisions in [0, K] (K = unknown) made without a
            threshold, or None (an imported OpenMax file's argmax over K+1).
    """

    path: Path | None
    meta: StoreMeta
    video_ids: np.ndarray
    labels: np.ndarray
    preds: np.ndarray
    logits: np.ndarray | None
    features: np.ndarray | None
    sample_logits: np.ndarray | None
    scores: Mapping[str, np.ndarray]
    decisions: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.labels)

    def score(self, name: str) -> np.ndarray:
        """The `(N,)` values of one score; an unknown name lists the stored ones."""
        if name not in self.scores:
            raise KeyError(f"{self.path}: no score {name!r}; stored scores: {', '.join(sorted(self.scores)) or 'none'}")
        return self.scores[name]

    def with_scores(self, extra: Mapping[str, np.ndarray]) -> ScoreStore:
        """A copy with more scores (e.g. a post-hoc OpenMax), checked for length and NaN."""
        new = dict(self.scores)
        for name, values in extra.items():
            new[name] = _check_score(self.path, name, values, len(self))
        return dataclasses.replace(self, scores=new)


def _where(path) -> str:
    return str(path) if path is not None else "<in-memory store>"


def _check_score(path, name: str, values, n: int) -> np.ndarray:
    arr = np.asarray(values, dtype=np.float64)
    if arr.shape != (n,):
        raise ScoreStoreError(f"{_where(path)}: score {name!r} has shape {arr.shape}, expected ({n},)")
    if not np.all(np.isfinite(arr)):
        raise ScoreStoreError(f"{_where(path)}: score {name!r} has {int(np.sum(~np.isfinite(arr)))} "
                              "NaN/inf value(s)")
    return arr


def _fixed_list(values: np.ndarray) -> pa.FixedSizeListArray:
    flat = pa.array(np.ascontiguousarray(values, dtype=np.float32).reshape(-1))
    return pa.FixedSizeListArray.from_arrays(flat, values.shape[1])


def _check_labels(path, meta: StoreMeta, labels: np.ndarray) -> None:
    if labels.size and labels.min() < 0:
        raise ScoreStoreError(f"{_where(path)}: negative label {labels.min()}")
    if meta.split not in (UNKNOWN_SPLIT, VAL_UNKNOWN_SPLIT) and labels.size and labels.max() >= meta.num_known:
        raise ScoreStoreError(f"{_where(path)}: split {meta.split!r} has label {labels.max()} outside "
                              f"[0, {meta.num_known}) (num_known={meta.num_known})")


def _check_ids(path, name: str, values, n: int, upper: int) -> np.ndarray:
    arr = np.asarray(values)
    if arr.shape != (n,) or not np.issubdtype(arr.dtype, np.integer):
        raise ScoreStoreError(f"{_where(path)}: {name} must be ({n},) integers, got {arr.dtype} {arr.shape}")
    if n and (arr.min() < 0 or arr.max() >= upper):
        bad = arr.min() if arr.min() < 0 else arr.max()
        raise ScoreStoreError(f"{_where(path)}: {name} has value {bad} outside [0, {upper})")
    return arr.astype(np.int64)


def write_score_store(path: str | Path, *, video_ids: Sequence[str], labels, logits, features=None,
                      sample_logits=None, scores: Mapping[str, np.ndarray], meta: StoreMeta,
                      preds=None, decisions=None) -> Path:
    """Write one model's outputs on one split.

    Args:
        path: the parquet file to write (parent folders are created).
        video_ids: `(N,)` video ids.
        labels: `(N,)` ints: in [0, K) for known splits, the unknown data set's class ids for `unknown`.
        logits: `(N, K)` view-averaged logits, K = `meta.num_known`; None only with `preds`
            (an imported store that has none).
        features: optional `(N, F)` pooled features (view-averaged), needed by OpenMax.
        sample_logits: optional `(S, N, K)` logits of S stochastic passes (MC dropout / BNN).
        scores: name -> `(N,)` uncertainty (higher = more likely unknown).
        meta: what the store holds.
        preds: `(N,)` closed-set predictions in [0, K); default the argmax of `logits`. With
            logits, a store that is not imported must give their argmax.
        decisions: optional `(N,)` open-set decisions in [0, K] (K = unknown) made without a
            threshold (an imported OpenMax file's argmax over K+1).

    Returns:
        The path written.
    """
    path = Path(path)
    n = len(video_ids)
    k = meta.num_known
    columns = {"video_id": pa.array([str(v) for v in video_ids], pa.string())}
    labels = np.asarray(labels)
    if labels.shape != (n,) or not np.issubdtype(labels.dtype, np.integer):
        raise ScoreStoreError(f"{path}: labels must be ({n},) integers, got {labels.dtype} {labels.shape}")
    _check_labels(path, meta, labels)
    columns["label"] = pa.array(labels.astype(np.int64))
    if logits is not None:
        logits = np.asarray(logits, dtype=np.float32)
        if logits.ndim != 2 or logits.shape != (n, k):
            raise ScoreStoreError(f"{path}: logits must be (N={n}, num_known={k}), got {logits.shape}")
        if not np.all(np.isfinite(logits)):
            raise ScoreStoreError(f"{path}: logits contain {int(np.sum(~np.isfinite(logits)))} NaN/inf value(s)")
    elif preds is None:
        raise ScoreStoreError(f"{path}: a store without logits needs its predictions (preds)")
    if preds is None:
        preds = logits.argmax(axis=1)
    preds = _check_ids(path, "preds", preds, n, k)
    if logits is not None and not meta.imported and not np.array_equal(preds, logits.argmax(axis=1)):
        raise ScoreStoreError(f"{path}: preds must be the argmax of the logits (only imported stores keep "
                              "their own predictions)")
    columns["pred"] = pa.array(preds)
    if logits is not None:
        columns["logits"] = _fixed_list(logits)
    if decisions is not None:
        columns["decision"] = pa.array(_check_ids(path, "decisions", decisions, n, k + 1))
    if features is not None:
        features = np.asarray(features, dtype=np.float32)
        if features.ndim != 2 or features.shape[0] != n:
            raise ScoreStoreError(f"{path}: features must be (N={n}, F), got {features.shape}")
        columns["features"] = _fixed_list(features)
    if sample_logits is not None:
        sample_logits = np.asarray(sample_logits, dtype=np.float32)
        if sample_logits.ndim != 3 or sample_logits.shape[1:] != (n, k):
            raise ScoreStoreError(f"{path}: sample_logits must be (S, N={n}, K={k}), "
                                  f"got {sample_logits.shape}")
        columns["sample_logits"] = _fixed_list(sample_logits.transpose(1, 0, 2).reshape(n, -1))
    for name, values in scores.items():
        columns[SCORE_PREFIX + name] = pa.array(_check_score(path, name, values, n))
    table = pa.table(columns).replace_schema_metadata({META_KEY: meta.to_json().encode()})
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path)
    return path


def _read_meta(path: Path, schema: pa.Schema) -> StoreMeta:
    raw = (schema.metadata or {}).get(META_KEY)
    if raw is None:
        raise ScoreStoreError(f"{path}: not a dear_ray score store (no '{META_KEY.decode()}' schema metadata)")
    try:
        data = json.loads(raw)
        fmt = data.pop("format")
        if fmt != STORE_FORMAT:
            raise ScoreStoreError(f"{path}: store format {fmt}, this version reads format {STORE_FORMAT}")
        return StoreMeta(**data)
    except (json.JSONDecodeError, TypeError, KeyError) as err:
        raise ScoreStoreError(f"{path}: unreadable store metadata ({err})") from None


def _matrix(path: Path, table: pa.Table, name: str, width: int | None) -> np.ndarray:
    col = table.column(name)
    typ = col.type
    if not (pa.types.is_fixed_size_list(typ) or pa.types.is_list(typ) or pa.types.is_large_list(typ)) \
            or not pa.types.is_floating(typ.value_type):
        raise ScoreStoreError(f"{path}: column {name!r} has type {typ}, expected a list of floats")
    arr = col.combine_chunks() if col.num_chunks != 1 else col.chunk(0)
    if arr.null_count:
        raise ScoreStoreError(f"{path}: column {name!r} has {arr.null_count} null row(s)")
    n = len(arr)
    if pa.types.is_fixed_size_list(typ):
        size = typ.list_size
    else:
        lengths = np.unique(arr.value_lengths().to_numpy(zero_copy_only=False))
        if len(lengths) > 1:
            raise ScoreStoreError(f"{path}: column {name!r} rows have different lengths {lengths.tolist()}")
        size = int(lengths[0]) if len(lengths) else (width or 0)
    values = arr.flatten().to_numpy(zero_copy_only=False).astype(np.float32, copy=False)
    if width is not None and size != width:
        raise ScoreStoreError(f"{path}: column {name!r} has {size} values a row, expected {width}")
    return values.reshape(n, size)


def read_score_store(path: str | Path, *, num_known: int | None = None) -> ScoreStore:
    """Read a store back, checking its schema.

    Args:
        path: the parquet file.
        num_known: the K the caller expects; a store from another class count is an error.

    Raises:
        ScoreStoreError: naming the file and the problem (missing columns, wrong types, NaN logits
            or scores, labels out of range, a different `num_known`).
    """
    path = Path(path)
    if not path.is_file():
        raise ScoreStoreError(f"{path}: no such score store file")
    try:
        table = pq.read_table(path)
    except (pa.ArrowInvalid, OSError) as err:
        raise ScoreStoreError(f"{path}: not a readable parquet file ({err})") from None
    meta = _read_meta(path, table.schema)
    if num_known is not None and meta.num_known != num_known:
        raise ScoreStoreError(f"{path}: store has num_known={meta.num_known} ({meta.dataset}/{meta.split}), "
                              f"expected num_known={num_known}")
    missing = [c for c in _REQUIRED if c not in table.column_names]
    if missing:
        raise ScoreStoreError(f"{path}: missing column(s) {', '.join(missing)}; has {', '.join(table.column_names)}")
    for name, check in (("video_id", pa.types.is_string), ("label", pa.types.is_integer),
                        ("pred", pa.types.is_integer)):
        typ = table.schema.field(name).type
        if not (check(typ) or (name == "video_id" and pa.types.is_large_string(typ))):
            raise ScoreStoreError(f"{path}: column {name!r} has type {typ}, expected "
                                  f"{'string' if name == 'video_id' else 'integer'}")
        if table.column(name).null_count:
            raise ScoreStoreError(f"{path}: column {name!r} has null values")
    k = meta.num_known
    logits = None
    if "logits" in table.column_names:
        logits = _matrix(path, table, "logits", k)
        if not np.all(np.isfinite(logits)):
            raise ScoreStoreError(f"{path}: logits contain {int(np.sum(~np.isfinite(logits)))} NaN/inf value(s)")
    elif not meta.imported:
        raise ScoreStoreError(f"{path}: missing column(s) logits; has {', '.join(table.column_names)}")
    labels = table.column("label").to_numpy().astype(np.int64)
    _check_labels(path, meta, labels)
    preds = table.column("pred").to_numpy().astype(np.int64)
    if len(labels) and (preds.min() < 0 or preds.max() >= k):
        raise ScoreStoreError(f"{path}: column 'pred' has a class id outside [0, {k})")
    if logits is not None and not meta.imported and not np.array_equal(preds, logits.argmax(axis=1)):
        raise ScoreStoreError(f"{path}: column 'pred' is not the argmax of 'logits'")
    decisions = None
    if "decision" in table.column_names:
        decisions = table.column("decision").to_numpy().astype(np.int64)
        if len(labels) and (decisions.min() < 0 or decisions.max() > k):
            raise ScoreStoreError(f"{path}: column 'decision' has a value outside [0, {k}]")
    features = _matrix(path, table, "features", None) if "features" in table.column_names else None
    sample_logits = None
    if "sample_logits" in table.column_names:
        flat = _matrix(path, table, "sample_logits", None)
        if flat.shape[1] % k:
            raise ScoreStoreError(f"{path}: sample_logits rows have {flat.shape[1]} values, not a multiple of K={k}")
        sample_logits = flat.reshape(len(flat), -1, k).transpose(1, 0, 2)
    scores = {}
    for name in table.column_names:
        if name.startswith(SCORE_PREFIX):
            typ = table.schema.field(name).type
            if not pa.types.is_floating(typ):
                raise ScoreStoreError(f"{path}: column {name!r} has type {typ}, expected float")
            values = table.column(name).to_numpy(zero_copy_only=False)
            scores[name[len(SCORE_PREFIX):]] = _check_score(path, name[len(SCORE_PREFIX):], values, len(labels))
    video_ids = np.asarray(table.column("video_id").to_pylist(), dtype=object)
    return ScoreStore(path=path, meta=meta, video_ids=video_ids, labels=labels, preds=preds, logits=logits,
                      features=features, sample_logits=sample_logits, scores=scores, decisions=decisions)
