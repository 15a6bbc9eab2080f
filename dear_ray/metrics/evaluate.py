"""`dear-ray evaluate`: score stores in, results table and plots out (SPEC 2).

Stores are grouped by model (`StoreMeta.run`, `StoreMeta.method`); each group needs one `train`
store, one known test store (`test`, else `val`), one or more `unknown` stores and optionally a
`test_shifted` store. Every method is evaluated with the SAME unknown-class subsets (drawn once per
set of unknown data sets), so curves and open maF1 compare like with like.

Without `scores`, each model is reported under its method's own score (`softmax` -> msp, `dear` ->
vacuity, ...), and a `softmax` model additionally yields an `mc_dropout` row (its stored `bald`
score) and an `openmax` row (OpenMax fitted post hoc on its train store) when the stores allow.
"""

from __future__ import annotations

import re
import warnings
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from dear_ray.metrics.openset import draw_unknown_subsets
from dear_ray.metrics.plots import (
    plot_confusion_matrix,
    plot_openness_curves,
    plot_reliability_diagram,
    plot_uncertainty_histograms,
)
from dear_ray.metrics.report import METRIC_KEYS, combine_unknown_classes, open_set_report
from dear_ray.scores import DEFAULT_SCORES, OpenMax, OpenMaxFitError, ScoreStore, read_score_store

INFO_COLUMNS = ("method", "score", "run", "head", "known", "unknown")
# the data behind the plots, one long table each (what notebooks/compare_methods.ipynb reads)
CURVES_FILE = "openness_curves.parquet"  # label, method, run, num_unknown_classes, openness, f1_*
SCORES_FILE = "uncertainty_scores.parquet"  # label, method, run, score, split, uncertainty, threshold


@dataclass
class ModelStores:
    """The stores of one model."""

    run: str
    method: str
    train: ScoreStore
    known: ScoreStore
    unknown: list[ScoreStore]
    shifted: ScoreStore | None

    @property
    def all(self) -> list[ScoreStore]:
        return [self.train, self.known, *self.unknown] + ([self.shifted] if self.shifted else [])

    def with_scores(self, name: str, fn) -> ModelStores:
        """A copy whose stores all carry score `name` = `fn(store)`."""
        add = lambda s: s.with_scores({name: fn(s)})  # noqa: E731
        return ModelStores(self.run, self.method, add(self.train), add(self.known), [add(u) for u in self.unknown],
                           add(self.shifted) if self.shifted else None)


def group_stores(stores: Sequence[ScoreStore]) -> list[ModelStores]:
    """Group stores by (run, method); errors name the run and the missing or duplicated split."""
    by_model: dict[tuple[str, str], list[ScoreStore]] = defaultdict(list)
    for store in stores:
        by_model[(store.meta.run, store.meta.method)].append(store)
    groups = []
    for (run, method), members in sorted(by_model.items()):
        split: dict[str, list[ScoreStore]] = defaultdict(list)
        for store in members:
            split[store.meta.split].append(store)
        for name, found in split.items():
            if name != "unknown" and len(found) > 1:
                raise ValueError(f"run {run!r} ({method}): {len(found)} {name!r} stores: "
                                 + ", ".join(str(s.path) for s in found))
        known = split.get("test") or split.get("val")
        missing = [n for n, ok in (("train", split.get("train")), ("test (or val)", known),
                                   ("unknown", split.get("unknown"))) if not ok]
        if missing:
            files = ", ".join(str(s.path) for s in members)
            raise ValueError(f"run {run!r} ({method}): no {' / '.join(missing)} store among {files}")
        unknown = sorted(split["unknown"], key=lambda s: (s.meta.dataset, str(s.path)))
        groups.append(ModelStores(run, method, split["train"][0], known[0], unknown,
                                  (split.get("test_shifted") or [None])[0]))
    return groups


def _with_openmax(group: ModelStores) -> tuple[ModelStores, str] | None:
    on = "features" if all(s.features is not None for s in group.all) else "logits"
    try:
        model = OpenMax(on=on).fit(group.train.logits, group.train.labels, group.train.features)
    except OpenMaxFitError as err:
        warnings.warn(f"run {group.run!r}: no openmax row: {err}", stacklevel=3)
        return None
    name = "openmax" if on == "features" else "openmax(on=logits)"
    return group.with_scores(name, lambda s: model(s.logits, features=s.features)), name


def _plans(group: ModelStores, scores: list[str] | None) -> list[tuple[str, str, ModelStores]]:
    """(method label, score name, stores) of every row a model yields."""
    have = set.intersection(*(set(s.scores) for s in group.all))
    if scores is not None:
        rows = []
        for name in scores:
            if name == "openmax" and name not in have:
                fitted = _with_openmax(group)
                if fitted:
                    rows.append((group.method, fitted[1], fitted[0]))
            elif name in have:
                rows.append((group.method, name, group))
            else:
                warnings.warn(f"run {group.run!r} ({group.method}): score {name!r} is not in all its stores "
                              f"(common scores: {', '.join(sorted(have)) or 'none'}); skipped", stacklevel=3)
        return rows
    default = DEFAULT_SCORES.get(group.method, DEFAULT_SCORES.get(group.train.meta.head, "msp"))
    if default not in have:
        raise ValueError(f"run {group.run!r} ({group.method}): default score {default!r} missing from its stores "
                         f"(common scores: {', '.join(sorted(have)) or 'none'}): "
                         + ", ".join(str(s.path) for s in group.all))
    rows = [(group.method, default, group)]
    if group.train.meta.head == "softmax":
        if "bald" in have and group.method != "mc_dropout":
            rows.append(("mc_dropout", "bald", group))
        fitted = _with_openmax(group)
        if fitted:
            rows.append(("openmax", fitted[1], fitted[0]))
    return rows


def _curve_frame(label: str, method: str, run: str, curve) -> pd.DataFrame:
    return pd.DataFrame({"label": label, "method": method, "run": run,
                         "num_unknown_classes": np.asarray(curve.num_unknown_classes, dtype=np.int64),
                         "openness": curve.openness, "f1_mean": curve.f1_mean, "f1_std": curve.f1_std})


def _score_frame(label: str, method: str, run: str, score: str, report) -> pd.DataFrame:
    """Every known-test and unknown sample's uncertainty (higher = more unknown)."""
    known, unknown = np.asarray(report.known_scores), np.asarray(report.unknown_scores)
    return pd.DataFrame({"label": label, "method": method, "run": run, "score": score,
                         "split": np.repeat(["known", "unknown"], [known.size, unknown.size]),
                         "uncertainty": np.concatenate([known, unknown]).astype(np.float64),
                         "threshold": float(report.metrics["threshold"])})


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_") or "model"


def _markdown(table: pd.DataFrame) -> str:
    def cell(col: str, value) -> str:
        if isinstance(value, float):
            if np.isnan(value):
                return "-"
            return f"{value:.4g}" if col == "threshold" else f"{100 * value:.2f}"
        return str(value).replace("|", "\\|")

    lines = ["| " + " | ".join(table.columns) + " |", "|" + "---|" * len(table.columns)]
    for _, row in table.iterrows():
        lines.append("| " + " | ".join(cell(c, row[c]) for c in table.columns) + " |")
    return "\n".join(lines) + "\n\n(metrics in percent except `threshold`, which is in the score's units)\n"


def evaluate_stores(store_paths: list[Path], out_dir: Path, *, scores: list[str] | None = None,
                    num_trials: int = 10, seed: int = 0, plots: bool = True) -> pd.DataFrame:
    """Evaluate every model found in `store_paths`; write tables and plots into `out_dir`.

    Args:
        store_paths: score store files (any order, any number of models).
        out_dir: receives `results.csv`, `results.parquet`, `results.md`, the plots' data
            (`CURVES_FILE`, `SCORES_FILE`), `openness_curves.png` and per row `hist_*.png`,
            `reliability_*.png`, `confusion_*.png`.
        scores: evaluate these scores (where a model's stores have them; `openmax` is fitted post
            hoc) instead of each method's own.
        num_trials: unknown-class subsets per openness point.
        seed: seed of the subsets, shared by every method.
        plots: write the PNG plots (False: tables only).

    Returns:
        One row per (model, score): `method`, `score`, `run`, `head`, `known`, `unknown` and the
        metrics of `dear_ray.metrics.report.METRIC_KEYS`.
    """
    if not store_paths:
        raise ValueError("evaluate_stores: no score store paths given")
    groups = group_stores([read_score_store(p) for p in store_paths])
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    shared: dict[tuple[str, ...], list] = {}
    rows, curves, curve_rows, score_rows = [], {}, [], []
    for group in groups:
        key = tuple(u.meta.dataset for u in group.unknown)
        if key not in shared:
            shared[key] = draw_unknown_subsets(combine_unknown_classes(group.unknown), num_trials=num_trials, seed=seed)
        for method, score, stores in _plans(group, scores):
            report = open_set_report(train=stores.train, known=stores.known, unknown=stores.unknown, score=score,
                                     shifted=stores.shifted, subsets=shared[key])
            label = method if scores is None else f"{method}/{score}"
            if sum(g.method == group.method for g in groups) > 1:
                label = f"{label} [{group.run}]"
            rows.append({"method": method, "score": score, "run": group.run, "head": group.train.meta.head,
                         "known": group.known.meta.dataset, "unknown": "+".join(key), **report.metrics})
            curves[label] = report.curve
            curve_rows.append(_curve_frame(label, method, group.run, report.curve))
            score_rows.append(_score_frame(label, method, group.run, score, report))
            if not plots:
                continue
            slug = _slug(label)
            plot_uncertainty_histograms(report.known_scores, report.unknown_scores, out_dir / f"hist_{slug}.png",
                                        score_name=score, threshold=report.metrics["threshold"], title=label)
            plot_reliability_diagram(report.confidence, report.correct, out_dir / f"reliability_{slug}.png",
                                     title=f"{label}: ECE {100 * report.metrics['ece']:.2f}%")
            plot_confusion_matrix(report.confusion, out_dir / f"confusion_{slug}.png", title=label)
    if not rows:
        raise ValueError(f"evaluate_stores: none of the scores {scores} is available in any model's stores")
    table = pd.DataFrame(rows).reindex(columns=[*INFO_COLUMNS, *METRIC_KEYS])  # absent metrics: NaN
    table.to_csv(out_dir / "results.csv", index=False)
    table.to_parquet(out_dir / "results.parquet", index=False)
    (out_dir / "results.md").write_text(_markdown(table))
    pd.concat(curve_rows, ignore_index=True).to_parquet(out_dir / CURVES_FILE, index=False)
    pd.concat(score_rows, ignore_index=True).to_parquet(out_dir / SCORES_FILE, index=False)
    if plots:
        plot_openness_curves(curves, out_dir / "openness_curves.png")
    return table

