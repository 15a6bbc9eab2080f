"""`dear-ray evaluate`: score stores in, results table and plots out (docs/metrics.md).

Stores are grouped by model (`dear_ray.metrics.groups`: `StoreMeta.run`, `StoreMeta.method`);
each group needs one `train` store, one known test store (`test`, else `val`), one or more
`unknown` stores and optionally a `test_shifted` store and the static-bias `test_scuba` /
`test_scufo` stores (`dear_ray.metrics.static_bias`: `scuba_top1`, `scufo_top1`, `contrast_acc`;
a table without them keeps those columns empty, and `results.md` leaves them out). Every unknown
set (one store each, named by its `StoreMeta.dataset`) is evaluated ON ITS OWN, as DEAR reports
HMDB-51 and MiT-v2 (`--ood_data HMDB|MiT`): one row per (model, method, unknown set), column
`unknown_set`. A merged set is only an explicit extra row (`merged_unknown=True`, `unknown_set` =
`all`). Every method is evaluated with the SAME unknown-class subsets of a set (drawn once per
set), so curves and open maF1 compare like with like.

Protocol (`protocol`, column `protocol`; `dear_ray.metrics.protocols`): `dear` (thresholded open
maF1 over the openness curve, binarised AUC, and the threshold-free metrics) or `psl` (PSL's: HMDB-51
without the classes overlapping UCF-101, MiT-v2 averaged over 10 subsamples, threshold-free
metrics only).

Without `scores`, each model is reported under its method's own score (`softmax` -> msp, `dear` ->
vacuity, ...), and a `softmax` model additionally yields an `mc_dropout` row (its stored `bald`
score) and an `openmax` row (OpenMax fitted post hoc on its train store) when the stores allow;
a `softmax` or `sdn` model also yields the post-hoc detector rows `<method>+<detector>`
(`dear_ray.metrics.posthoc`: energy, maxlogit, gen, temp_msp, mahalanobis, knn, vim, react, ash,
rmds, scale, fdbd, nnguide, she, dice; those it cannot fit are skipped with a one-line warning),
and an evidential model (`edl`, `edl_avu`, `dear`, `dear_alt`) the rows `<method>+mpu`,
`<method>+diff_entropy` and `<method>+mutual_info`.
OpenMax DECIDES by the argmax over K+1 classes (`openmax_decision="argmax"`, DEAR's
`baseline_openmax.py`); `"threshold"` thresholds P(unknown) at the 95% training cut instead.

Intervals (`dear_ray.metrics.bootstrap`): every metric M but `threshold` gets `M_ci_low` /
`M_ci_high`, the 95% percentile bootstrap over the test, unknown, `test_shifted` and static-bias
videos, and
`M_diff_sig`: whether the paired-bootstrap interval of M minus the same metric of the `softmax`
baseline on the same videos (same known set and data folder, unknown set, backbone and seed:
the demo's control trial has its own softmax baseline on the unbiased copy) excludes 0 (NA for
the baseline itself and rows without one). Post-hoc detector rows use `posthoc_resamples` (200)
and `posthoc_curve_resamples` (50), the first of the same draws, so they still pair.
"""

from __future__ import annotations

import dataclasses
import re
import warnings
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from dear_ray.methods import HEAD_ROWS
from dear_ray.metrics.bootstrap import (
    CI_KEYS,
    DEFAULT_CURVE_RESAMPLES,
    DEFAULT_RESAMPLES,
    bootstrap_report,
    paired_difference,
    percentile_interval,
)
from dear_ray.metrics.groups import ModelStores, Plan, group_stores
from dear_ray.metrics.openset import draw_dear_stream_subsets, draw_unknown_subsets
from dear_ray.metrics.plots import (
    plot_confusion_matrix,
    plot_histogram_grid,
    plot_openness_curves_by_set,
    plot_reliability_diagram,
    plot_uncertainty_histograms,
)
from dear_ray.metrics.posthoc import POSTHOC_HEADS, POSTHOC_SCORES, posthoc_plans
from dear_ray.metrics.exclusion import Exclusion, without_classes
from dear_ray.metrics.posthoc_tune import params_json
from dear_ray.metrics.protocols import (
    MIT_ORDERS,
    PSL_MIT_KNOWN_ROWS,
    check_protocol,
    psl_bootstrap,
    psl_metrics,
    psl_slices,
    psl_unknown,
)
from dear_ray.metrics.report import (
    MERGED_UNKNOWN_SET,
    METRIC_KEYS,
    ONE_MINUS_CONFIDENCE,
    combine_unknown_classes,
    open_set_report,
)
from dear_ray.metrics.static_bias import STATIC_BIAS_KEYS
from dear_ray.scores import (
    DEFAULT_SCORES,
    EVIDENTIAL_HEADS,
    EVIDENTIAL_POSTHOC,
    OpenMax,
    OpenMaxFitError,
    ScoreStore,
    create_score,
    read_score_store,
)
from dear_ray.scores.classifier import prob_averaged

INFO_COLUMNS = ("method", "score", "run", "head", "known", "unknown_set", "protocol", "backbone", "seed")
# what a post-hoc row's detector read and was fitted on: in results.csv / .parquet, not results.md
DETECTOR_COLUMN = "detector"
DETECTOR_PARAMS_COLUMN = "detector_params"  # its hyper-parameters, JSON (`posthoc_tune.params_json`)
CI_COLUMNS = tuple(f"{k}_{side}" for k in CI_KEYS for side in ("ci_low", "ci_high"))
SIG_COLUMNS = tuple(f"{k}_diff_sig" for k in CI_KEYS)
BASELINE_METHOD = "softmax"
OPENMAX_DECISIONS = ("argmax", "threshold")
SUBSET_DRAWS = ("shared", "dear_stream")
# resamples of the post-hoc detector rows (the first of the same resamples as the other rows)
POSTHOC_RESAMPLES = 200
POSTHOC_CURVE_RESAMPLES = 50
# the data behind the plots, one long table each (what notebooks/compare_methods.ipynb reads)
CURVES_FILE = "openness_curves.parquet"  # label, method, run, unknown_set, num_unknown_classes, openness, f1_*
SCORES_FILE = "uncertainty_scores.parquet"  # label, method, run, unknown_set, score, split, uncertainty, threshold


def _with_openmax(group: ModelStores, decision: str) -> Plan | None:
    on = "features" if all(s.features is not None for s in group.all) else "logits"
    try:
        model = OpenMax(on=on).fit(group.train.logits, group.train.labels, group.train.features)
    except OpenMaxFitError as err:
        warnings.warn(f"run {group.run!r}: no openmax row: {err}", stacklevel=3)
        return None
    name = "openmax" if on == "features" else "openmax(on=logits)"
    decide = (lambda s: model.predict(s.logits, features=s.features)) if decision == "argmax" else None
    return Plan("openmax", name, group.with_scores(name, lambda s: model(s.logits, features=s.features)), decide)


def _plans(group: ModelStores, scores: list[str] | None, openmax_decision: str,
           posthoc: Sequence[str], knn_k: int, tune: str | None = None) -> list[Plan]:
    """Every row a model yields."""
    have = set.intersection(*(set(s.scores) for s in group.all))
    if group.known.meta.imported:
        return _imported_plans(group, scores, have)
    if scores is not None:
        rows = []
        for name in scores:
            stale = name in ("energy", "maxlogit") and prob_averaged(group.train)
            if name == "openmax" and name not in have:
                fitted = _with_openmax(group, openmax_decision)
                if fitted:
                    rows.append(Plan(group.method, fitted.score, fitted.stores, fitted.decide))
            elif (name in POSTHOC_SCORES and (name not in have or stale)
                  and group.train.meta.head in (EVIDENTIAL_HEADS if name in EVIDENTIAL_POSTHOC else POSTHOC_HEADS)):
                fitted, skipped = posthoc_plans(group, [name], knn_k=knn_k, tune=tune)
                rows += [dataclasses.replace(p, method=group.method, fewer_resamples=False) for p in fitted]
                for line in skipped:
                    warnings.warn(line, stacklevel=3)
            elif name in have:
                rows.append(Plan(group.method, name, group))
            else:
                warnings.warn(f"run {group.run!r} ({group.method}): score {name!r} is not in all its stores "
                              f"(common scores: {', '.join(sorted(have)) or 'none'}); skipped", stacklevel=3)
        return rows
    default = DEFAULT_SCORES.get(group.method, DEFAULT_SCORES.get(group.train.meta.head, "msp"))
    if default == "psl" and default not in have:  # PSL's Mahalanobis score: fitted on the train store
        train = group.train
        if train.features is None:
            raise ValueError(f"run {group.run!r} (psl): its stores hold no features for PSL's score")
        model = create_score("psl").fit(train.logits, train.labels, train.features)
        return [Plan(group.method, "psl", group.with_scores("psl", lambda s: model(s.logits, features=s.features)))]
    if default not in have:
        raise ValueError(f"run {group.run!r} ({group.method}): default score {default!r} missing from its stores "
                         f"(common scores: {', '.join(sorted(have)) or 'none'}): "
                         + ", ".join(str(s.path) for s in group.all))
    rows = [Plan(group.method, default, group)]
    spec = HEAD_ROWS.get(group.train.meta.head)
    for derived in spec.derived if spec else ():  # a softmax model's MC dropout and OpenMax rows
        if derived.name == "openmax":
            fitted = _with_openmax(group, openmax_decision)
            if fitted:
                rows.append(fitted)
        elif derived.score in have and group.method != derived.name:
            rows.append(Plan(derived.name, derived.score, group))
    if posthoc:
        fitted, skipped = posthoc_plans(group, posthoc, knn_k=knn_k, tune=tune)
        rows += fitted
        for line in skipped:
            warnings.warn(line, stacklevel=3)
    return rows


def _imported_plans(group: ModelStores, scores: list[str] | None, have: set[str]) -> list[Plan]:
    """An imported model's row: its own score (or the requested ones it has); nothing is fitted.
    One line says what the stores cannot give."""
    names = [group.known.meta.extra.get("score", "")] if scores is None else [n for n in scores if n in have]
    for name in [n for n in (scores or names) if n not in have]:
        warnings.warn(f"run {group.run!r} ({group.method}, imported): no score {name!r} (stored: "
                      f"{', '.join(sorted(have)) or 'none'}); skipped", stacklevel=4)
    missing = []
    if group.known.logits is None:
        missing.append("top-5 needs logits")
        if any(n.split("(")[0] not in ONE_MINUS_CONFIDENCE for n in names):
            missing.append("calibration (ECE) needs logits or a 1 - confidence score")
    if group.train is None or group.train.logits is None or group.train.features is None:
        missing.append("post-hoc detector and OpenMax rows need a training split's logits and features")
    else:
        missing.append("post-hoc detector and OpenMax rows are not fitted on another codebase's model")
    warnings.warn(f"run {group.run!r} ({group.method}, imported): {'; '.join(missing)}: left out (the stores "
                  "hold scores and predictions)", stacklevel=4)
    return [Plan(group.method, name, group) for name in names if name in have]


def _unknown_sets(group: ModelStores, merged: bool) -> list[tuple[str, list[ScoreStore]]]:
    """(name, stores) of each unknown set of a model: one store each, plus `all` when asked."""
    by_name: dict[str, list[ScoreStore]] = defaultdict(list)
    for store in group.unknown:
        by_name[store.meta.dataset].append(store)
    sets = []
    for name, found in by_name.items():
        if len(found) > 1:
            raise ValueError(f"run {group.run!r} ({group.method}): {len(found)} unknown stores of data set "
                             f"{name!r}: " + ", ".join(str(s.path) for s in found))
        if name == MERGED_UNKNOWN_SET:
            raise ValueError(f"{found[0].path}: an unknown data set may not be named {MERGED_UNKNOWN_SET!r} "
                             "(the name of the merged set)")
        sets.append((name, found))
    if merged and len(sets) > 1:
        sets.append((MERGED_UNKNOWN_SET, list(group.unknown)))
    return sets


def _with_exclusions(sets: list[tuple[str, list[ScoreStore]]], exclude: Exclusion | None):
    """`(name, stores, cut)` of each unknown set, `cut` = identity; then, for each set holding an
    excluded class, `(<set>-minus-<tag>, stores, cut)` with `cut` removing those classes' videos."""
    out = [(name, stores, _identity) for name, stores in sets]
    for name, stores in sets if exclude is not None else []:
        if any(u.meta.dataset in exclude.ids for u in stores):
            cut = lambda u, ids=exclude.ids: (without_classes(u, ids[u.meta.dataset])  # noqa: E731
                                              if u.meta.dataset in ids else u)
            out.append((exclude.set_name(name), stores, cut))
    return out


def _identity(store: ScoreStore) -> ScoreStore:
    return store


def _curve_frame(label: str, method: str, run: str, unknown_set: str, curve, band) -> pd.DataFrame:
    return pd.DataFrame({"label": label, "method": method, "run": run, "unknown_set": unknown_set,
                         "num_unknown_classes": np.asarray(curve.num_unknown_classes, dtype=np.int64),
                         "openness": curve.openness, "f1_mean": curve.f1_mean, "f1_std": curve.f1_std,
                         "f1_ci_low": band[0], "f1_ci_high": band[1]})


def _score_frame(label: str, method: str, run: str, unknown_set: str, score: str, report) -> pd.DataFrame:
    """Every known-test and unknown sample's uncertainty (higher = more unknown)."""
    known, unknown = np.asarray(report.known_scores), np.asarray(report.unknown_scores)
    return pd.DataFrame({"label": label, "method": method, "run": run, "unknown_set": unknown_set, "score": score,
                         "split": np.repeat(["known", "unknown"], [known.size, unknown.size]),
                         "uncertainty": np.concatenate([known, unknown]).astype(np.float64),
                         "threshold": float(report.metrics["threshold"])})


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_") or "model"


def _cell(col: str, value) -> str:
    if isinstance(value, (bool, np.bool_)):
        return "yes" if value else "no"
    if isinstance(value, float):
        if np.isnan(value):
            return "-"
        return f"{value:.4g}" if col == "threshold" else f"{100 * value:.2f}"
    if value is pd.NA or value is None:
        return "-"
    return str(value).replace("|", "\\|")


def _markdown(table: pd.DataFrame, note: str = "") -> str:
    """The table without its interval columns; `value [low, high]` cells for metrics with them.
    The static-bias columns appear only when a row has them (a sweep without SCUBA/SCUFO stores)."""
    shown = [c for c in table.columns if not c.endswith(("_ci_low", "_ci_high", "_diff_sig"))
             and c not in (DETECTOR_COLUMN, DETECTOR_PARAMS_COLUMN)
             and not (c in STATIC_BIAS_KEYS and table[c].isna().all())]
    lines = ["| " + " | ".join(shown) + " |", "|" + "---|" * len(shown)]
    for _, row in table.iterrows():
        cells = []
        for col in shown:
            text = _cell(col, row[col])
            if f"{col}_ci_low" in table.columns and text != "-":
                text += f" [{_cell(col, row[f'{col}_ci_low'])}, {_cell(col, row[f'{col}_ci_high'])}]"
                if row.get(f"{col}_diff_sig") is True:
                    text += " *"
            cells.append(text)
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + (
        "\n\n(metrics in percent with their 95% bootstrap interval, except `threshold`, which is in the "
        f"score's units; `*`: the paired difference to {BASELINE_METHOD} on the same videos excludes 0)\n"
        + (f"\n{note}\n" if note else ""))


@dataclass
class _Row:
    info: dict
    report: object
    boot: object
    label: str
    posthoc: bool = False


def _pair_key(row: _Row) -> tuple:
    return (row.info["known"], row.info["data"], row.info["unknown_set"], row.info["backbone"],
            row.info["seed"])


def _significance(rows: list[_Row]) -> list[dict[str, object]]:
    """`M_diff_sig` of every row against the softmax baseline on the same videos."""
    default = DEFAULT_SCORES[BASELINE_METHOD]
    baselines: dict[tuple, list[_Row]] = defaultdict(list)
    for row in rows:
        if row.info["method"] == BASELINE_METHOD and row.info["score"] == default:
            baselines[_pair_key(row)].append(row)
    out = []
    for row in rows:
        found = baselines.get(_pair_key(row), [])
        same_run = [b for b in found if b.info["run"] == row.info["run"]]
        base = (same_run or found)[0] if len(same_run or found) == 1 else None
        sig: dict[str, object] = {}
        for key in CI_KEYS:
            diff = None if base is None or base is row or row.boot is None or base.boot is None else \
                paired_difference(row.boot, base.boot, key)
            sig[f"{key}_diff_sig"] = pd.NA if diff is None or np.isnan(diff[0]) else bool(diff[0] > 0 or diff[1] < 0)
        out.append(sig)
    return out


def evaluate_stores(store_paths: list[Path], out_dir: Path, *, scores: list[str] | None = None,
                    num_trials: int = 10, seed: int = 0, plots: bool = True, merged_unknown: bool = False,
                    openmax_decision: str = "argmax", resamples: int = DEFAULT_RESAMPLES,
                    curve_resamples: int = DEFAULT_CURVE_RESAMPLES, bootstrap_seed: int = 0,
                    run_labels: Sequence[str | None] | None = None, protocol: str = "dear",
                    posthoc: Sequence[str] = POSTHOC_SCORES, posthoc_resamples: int = POSTHOC_RESAMPLES,
                    posthoc_curve_resamples: int = POSTHOC_CURVE_RESAMPLES, knn_k: int = 50,
                    mit_order: str = "released", hmdb_order: str = "lists",
                    data_of: Mapping[str, str] | None = None, threshold_print: str = "released",
                    mit_known_rows: int | None = PSL_MIT_KNOWN_ROWS,
                    subset_draws: str = "shared", posthoc_tune: str | None = None,
                    exclude_classes: Exclusion | None = None) -> pd.DataFrame:
    """Evaluate every model found in `store_paths`; write tables and plots into `out_dir`.

    Args:
        store_paths: score store files (any order, any number of models).
        out_dir: receives `results.csv`, `results.parquet`, `results.md`, the plots' data
            (`CURVES_FILE` under `dear` only, `SCORES_FILE`), `openness_curves.png` (a panel per
            unknown set) and per row `hist_*.png`, `reliability_*.png`, `confusion_*.png` (`psl`:
            the histograms only).
        scores: evaluate these scores (where a model's stores have them; `openmax` and the
            detectors of `POSTHOC_SCORES` are fitted post hoc) instead of each method's own.
        num_trials: unknown-class subsets per openness point.
        seed: seed of the subsets, shared by every method (and of `mit_order="shuffled"`).
        plots: write the PNG plots (False: tables only).
        merged_unknown: also a row per model on all its unknown sets merged (`unknown_set` = `all`;
            `dear` only).
        openmax_decision: `argmax` (DEAR: argmax over K+1 classes) or `threshold` (P(unknown) >
            the 95% training cut).
        resamples: bootstrap resamples of every metric's interval (0: no intervals).
        curve_resamples: resamples of the open maF1 interval and the curve's band (the first
            `curve_resamples` of the same resamples; the curve is the costly part).
        bootstrap_seed: seed of the resamples.
        run_labels: one per store path (or None): the label that replaces the store's run name,
            e.g. `<sweep>/<trial>` when several sweeps with the same trial names are compared.
        protocol: `dear` or `psl` (`dear_ray.metrics.protocols`), the table's `protocol` column.
        posthoc: the post-hoc detector rows of a softmax-classifier model without `scores`
            (`dear_ray.metrics.posthoc`; empty: none).
        posthoc_resamples, posthoc_curve_resamples: their (smaller) resample counts, the first of
            the same resamples, so their paired differences to softmax still pair.
        knn_k: the KNN detector's k (without tuning).
        posthoc_tune: `val` (choose the post-hoc detectors' hyper-parameters on each model's `val`
            and `val_unknown` stores, never on test data: `dear_ray.metrics.posthoc_tune`),
            `none` (the defaults), or None: `val` for the models that have both stores.
        exclude_classes: unknown class ids to leave out per unknown set
            (`dear_ray.metrics.exclusion.resolve_exclusion`): each set holding one is reported
            twice, whole and without them (`unknown_set` `<set>-minus-<tag>`).
        mit_order, hmdb_order, mit_known_rows: `psl`'s MiT-v2 slices (order, known block) and
            HMDB-51 class-id order (`dear_ray.metrics.protocols`).
        data_of: run name -> its data folder, for stores written before the stores recorded
            theirs (`data_root` in their metadata): a row is compared with the softmax baseline
            of the same data folder, known set, unknown set, backbone and seed.
        threshold_print: `released` (DEAR's `get_threshold.py` thresholds as printed, 6
            decimals) or `exact` (`dear_ray.metrics.report.report_threshold`).
        subset_draws: `shared` (the same seeded subsets for every method of a set) or
            `dear_stream` (DEAR's `np.random` stream, seed 123, continuing across the rows of a
            set in table order: `dear_ray.metrics.openset.draw_dear_stream_subsets`).

    Imported stores (`dear_ray.scores.released`) need no `train` store: each model yields one row
    under its own score, with the threshold imported with it.

    Returns:
        One row per (model, method, unknown set): `INFO_COLUMNS`, the metrics of `METRIC_KEYS`,
        then `CI_COLUMNS` and `SIG_COLUMNS`.
    """
    if not store_paths:
        raise ValueError("evaluate_stores: no score store paths given")
    if openmax_decision not in OPENMAX_DECISIONS:
        raise ValueError(f"openmax_decision={openmax_decision!r}; expected one of {', '.join(OPENMAX_DECISIONS)}")
    check_protocol(protocol)
    if mit_order not in MIT_ORDERS:
        raise ValueError(f"mit_order={mit_order!r}; expected one of {', '.join(MIT_ORDERS)}")
    stores = [read_score_store(p) for p in store_paths]
    if run_labels is not None:
        if len(run_labels) != len(stores):
            raise ValueError(f"evaluate_stores: {len(run_labels)} run labels for {len(stores)} stores")
        stores = [s if label is None else dataclasses.replace(
            s, meta=dataclasses.replace(s.meta, run=label)) for s, label in zip(stores, run_labels, strict=True)]
    groups = group_stores(stores)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if protocol == "psl" and merged_unknown:
        warnings.warn("protocol 'psl' reports each unknown set on its own; merged_unknown ignored", stacklevel=2)
    if subset_draws not in SUBSET_DRAWS:
        raise ValueError(f"subset_draws={subset_draws!r}; expected one of {', '.join(SUBSET_DRAWS)}")
    shared: dict[tuple[str, ...], list] = {}
    drawn: dict[tuple[str, ...], int] = defaultdict(int)  # rows evaluated per set (DEAR's stream)
    rows: list[_Row] = []
    for group in groups:
        first = group.train or group.known
        extra = first.meta.extra
        plans = _plans(group, scores, openmax_decision, posthoc, knn_k, posthoc_tune)
        for unknown_set, unknown, cut in _with_exclusions(
                _unknown_sets(group, merged_unknown and protocol == "dear"), exclude_classes):
            datasets = tuple(u.meta.dataset for u in unknown)
            key = datasets + ((unknown_set,) if unknown_set not in datasets else ())
            unknown = [cut(u) for u in unknown]
            if protocol == "psl":
                unknown = [psl_unknown(u, hmdb_order=hmdb_order) for u in unknown]
            if key not in shared:
                shared[key] = draw_unknown_subsets(combine_unknown_classes(unknown), num_trials=num_trials, seed=seed)
            for plan in plans:
                stores = plan.stores
                picked = [cut(u) for u in stores.unknown if u.meta.dataset in datasets]
                if protocol == "psl":
                    picked = [psl_unknown(u, hmdb_order=hmdb_order) for u in picked]
                subsets = shared[key]
                if subset_draws == "dear_stream":
                    subsets = draw_dear_stream_subsets(int(combine_unknown_classes(picked).max()) + 1,
                                                       num_trials=num_trials, position=drawn[key])
                    drawn[key] += 1
                report = open_set_report(train=stores.train, known=stores.known, unknown=picked, score=plan.score,
                                         shifted=stores.shifted, subsets=subsets, decide=plan.decide,
                                         scuba=stores.scuba, scufo=stores.scufo, threshold_print=threshold_print)
                b = posthoc_resamples if plan.fewer_resamples else resamples
                c = posthoc_curve_resamples if plan.fewer_resamples else curve_resamples
                if protocol == "psl":
                    slices = psl_slices(report.known_ids, report.unknown_ids, unknown_set, mit_order=mit_order,
                                        seed=seed, mit_known_rows=mit_known_rows)
                    report = dataclasses.replace(report, metrics=psl_metrics(report, slices))
                    boot = psl_bootstrap(report, slices, resamples=b, seed=bootstrap_seed) if b > 0 else None
                else:
                    boot = bootstrap_report(report, subsets, resamples=b, curve_resamples=c,
                                            seed=bootstrap_seed) if b > 0 else None
                label = plan.method if scores is None else f"{plan.method}/{plan.score}"
                if sum(g.method == group.method for g in groups) > 1:
                    label = f"{label} [{group.run}]"
                info = {"method": plan.method, "score": plan.score, "run": group.run, "head": first.meta.head,
                        DETECTOR_COLUMN: plan.description,
                        DETECTOR_PARAMS_COLUMN: params_json(plan.params),
                        "known": group.known.meta.dataset,
                        # the data set's folder: the demo's biased and unbiased copies share the
                        # name and the video ids, and each has its own softmax baseline
                        "data": extra.get("data_root") or (data_of or {}).get(group.run, ""),
                        "unknown_set": unknown_set, "protocol": protocol,
                        "backbone": extra.get("backbone", ""),
                        "seed": int(extra["seed"]) if extra.get("seed", "").isdigit() else pd.NA}
                rows.append(_Row(info, report, boot, label, plan.fewer_resamples))
    if not rows:
        raise ValueError(f"evaluate_stores: none of the scores {scores} is available in any model's stores")
    table = _table(rows)
    _write(table, rows, out_dir, plots, curves=protocol == "dear",
           note=_settings_note(protocol, threshold_print, subset_draws, seed, mit_known_rows))
    return table


def _table(rows: list[_Row]) -> pd.DataFrame:
    records = []
    for row, sig in zip(rows, _significance(rows), strict=True):
        ci = {}
        for key in CI_KEYS:
            low, high = (row.boot.interval(key) if row.boot is not None and key in row.boot.values
                         else (float("nan"), float("nan")))
            ci[f"{key}_ci_low"], ci[f"{key}_ci_high"] = low, high
        records.append({**row.info, **row.report.metrics, **ci, **sig})
    table = pd.DataFrame(records).reindex(columns=[*INFO_COLUMNS, *METRIC_KEYS, *CI_COLUMNS, *SIG_COLUMNS,
                                                   DETECTOR_COLUMN, DETECTOR_PARAMS_COLUMN])
    table["seed"] = table["seed"].astype("Int64")
    for col in SIG_COLUMNS:
        table[col] = table[col].astype("boolean")
    return table


def _settings_note(protocol: str, threshold_print: str, subset_draws: str, seed: int,
                   mit_known_rows: int | None) -> str:
    """Which released behaviours the table used (docs/fidelity.md)."""
    thresholds = ("DEAR's get_threshold.py thresholds as printed (6 decimals)" if threshold_print == "released"
                  else "exact training-set thresholds")
    if protocol == "psl":
        block = f"the first {mit_known_rows} rows" if mit_known_rows is not None else "the whole known set"
        return f"Settings: {thresholds}; MiT-v2 slices after a known block of {block} (PSL's eval_osr)."
    subsets = (f"the same seeded class subsets for every method (seed {seed})" if subset_draws == "shared"
               else "DEAR's np.random stream (seed 123) in table order")
    return f"Settings: {thresholds}; open maF1 over {subsets}."


def _write(table: pd.DataFrame, rows: list[_Row], out_dir: Path, plots: bool, *, curves: bool = True,
           note: str = "") -> None:
    """The tables, the plots' data and the plots. `curves=False` (`psl`, no threshold): no
    openness curves, reliability or confusion plots. Post-hoc detector rows get one histogram
    panel each in `hist_posthoc_<run>_<set>.png` (their closed-set predictions, hence reliability
    and confusion, are their model's) and stay out of `openness_curves.png` (their curves are in
    `CURVES_FILE`)."""
    table.to_csv(out_dir / "results.csv", index=False)
    table.to_parquet(out_dir / "results.parquet", index=False)
    (out_dir / "results.md").write_text(_markdown(table, note))
    curve_rows, score_rows = [], []
    grids: dict[tuple[str, str], list[dict]] = defaultdict(list)  # (run, set) -> post-hoc panels
    for row in rows:
        rep, set_name = row.report, row.info["unknown_set"]
        if curves and rep.curve is not None:
            if row.boot is not None and row.boot.curve_f1.size:
                band = np.array([percentile_interval(col) for col in row.boot.curve_f1.T]).T
            else:
                band = np.full((2, len(rep.curve.f1_mean)), np.nan)
            curve_rows.append(_curve_frame(row.label, row.info["method"], row.info["run"], set_name, rep.curve, band))
        score_rows.append(_score_frame(row.label, row.info["method"], row.info["run"], set_name,
                                       row.info["score"], rep))
        if not plots:
            continue
        threshold = rep.metrics["threshold"]
        threshold = None if np.isnan(threshold) else threshold
        if row.posthoc:
            grids[(row.info["run"], set_name)].append(
                {"known": rep.known_scores, "unknown": rep.unknown_scores, "score_name": row.info["score"],
                 "threshold": threshold, "title": row.label})
            continue
        slug = _slug(f"{row.label}_{set_name}")
        plot_uncertainty_histograms(rep.known_scores, rep.unknown_scores, out_dir / f"hist_{slug}.png",
                                    score_name=row.info["score"], threshold=threshold,
                                    title=f"{row.label} (unknown: {set_name})")
        if not curves:
            continue
        if np.isfinite(rep.metrics["ece"]):
            plot_reliability_diagram(rep.confidence, rep.correct, out_dir / f"reliability_{_slug(row.label)}.png",
                                     title=f"{row.label}: ECE {100 * rep.metrics['ece']:.2f}%")
        plot_confusion_matrix(rep.confusion, out_dir / f"confusion_{slug}.png",
                              title=f"{row.label} (unknown: {set_name})")
    for (run, set_name), panels in grids.items():
        plot_histogram_grid(panels, out_dir / f"hist_posthoc_{_slug(f'{run}_{set_name}')}.png",
                            title=f"post-hoc detectors of {run} (unknown: {set_name})")
    pd.concat(score_rows, ignore_index=True).to_parquet(out_dir / SCORES_FILE, index=False)
    if curves and curve_rows:
        frame = pd.concat(curve_rows, ignore_index=True)
        frame.to_parquet(out_dir / CURVES_FILE, index=False)
        if plots:  # the post-hoc detectors' curves stay in CURVES_FILE, out of the crowded plot
            shown = frame[~frame["label"].isin({row.label for row in rows if row.posthoc})]
            plot_openness_curves_by_set(shown, out_dir / "openness_curves.png")
