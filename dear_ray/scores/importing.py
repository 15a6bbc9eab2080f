"""`dear-ray scores import`: released score files (`--format dear`, `dear_ray.scores.released`) or
any codebase's score table (`--format table`, `dear_ray.scores.score_table`) written as score
stores (docs/importing.md).
"""

from __future__ import annotations

from pathlib import Path

from dear_ray.scores.released import ScoreImportError, read_dear_npz, write_imported
from dear_ray.scores.score_table import read_score_table
from dear_ray.scores.store import read_score_store


def import_scores(files, *, fmt: str = "dear", method: str, unknown_set: str, out_dir: str | Path,
                  threshold: float | None = None, known_set: str = "ucf101", layout: str = "auto",
                  run: str | None = None, backbone: str | None = None, column: int = 0) -> list[Path]:
    """`dear-ray scores import`: check every file first, then write a run folder per file.

    Args:
        files: `.npz` files (`fmt="dear"`) or CSV / parquet tables (`fmt="table"`,
            `dear_ray.scores.score_table`), one model each.
        method: the method name of the results table (`dear`, `psl`, `softmax`, ...).
        unknown_set, known_set: the data set names (`hmdb51`, `mit_v2`; `ucf101`).
        out_dir: where the run folders go.
        threshold: the method's released threshold (as its script takes it).
        run: the run name (one file only); default each file's stem.
        backbone: recorded in the stores (`StoreMeta.extra["backbone"]`).
        layout, column: see `read_dear_npz`.

    Returns:
        The stores written; nothing is written when any file fails its checks.
    """
    files = [Path(f) for f in files]
    if not files:
        raise ScoreImportError("scores import: no files given")
    if run is not None and len(files) > 1:
        raise ScoreImportError(f"--run names one model; {len(files)} files were given (each gets its file stem)")
    if fmt == "dear":
        models = [read_dear_npz(f, known_set=known_set, unknown_set=unknown_set, layout=layout,
                                threshold=threshold, column=column) for f in files]
    elif fmt == "table":
        models = [read_score_table(f, known_set=known_set, unknown_set=unknown_set, threshold=threshold)
                  for f in files]
    else:
        raise ScoreImportError(f"format {fmt!r}; expected dear or table")
    runs = [run or f.stem for f in files]
    if len(set(runs)) < len(runs):
        raise ScoreImportError(f"two files have the same stem ({', '.join(runs)}); import them one at a time "
                               "with --run")
    written = []
    for model, name in zip(models, runs, strict=True):
        written += write_imported(model, out_dir, method=method, run=name, known_set=known_set,
                                  unknown_set=unknown_set, backbone=backbone, fmt=fmt)
    return written


def import_summary(paths) -> str:
    """One line per written store: path, split, videos, score and threshold."""
    lines = []
    for path in paths:
        store = read_score_store(path)
        thr = "none" if store.meta.threshold is None else f"{store.meta.threshold:.9g}"
        lines.append(f"{path}: {store.meta.split} ({store.meta.dataset}), {len(store)} videos, score "
                     f"{store.meta.extra.get('score')!r}, method {store.meta.method}, threshold {thr}")
    return "\n".join(lines)
