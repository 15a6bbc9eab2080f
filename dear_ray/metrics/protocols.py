"""Open-set evaluation protocols (`eval.protocol`): `dear` and `psl` (docs/metrics.md,
docs/importing.md).

- `dear` (DEAR's `compare_openness_new.py`, the default): every unknown set on its own, the
  threshold from the training split, open maF1 over the openness curve, binarised AUC, plus the
  threshold-free metrics (`dear_ray.metrics.report.open_set_report`).
- `psl` (Jun-CEN/PSL `evaluation_code/experiments/compare_openness_new_{hmdb,mit}*.py`): its
  "all thresholds" table, the threshold-free metrics (AUROC, AUPR, FPR@95: PSL's AUPR is
  `aupr_out_trapz`, its FPR@95 `fpr_at_95_tpr_nearest`; every convention of the table is still
  given), and its "specific threshold" table, the same three on the 0/1 rejections
  (`binarized_auc`, `binarized_aupr_out_trapz`, `binarized_fpr_at_95_tpr_nearest`) at `psl_threshold`:
  DEAR's threshold where the model has one (the training cut, or the threshold imported with it),
  else the 85% cut of the known TEST scores (`PSL_KNOWN_CUT`, PSL's rule for its own and the
  OpenMax files; its scratch scripts apply it to every file). Per set:
  - an HMDB-51 set (unknown store dataset in `HMDB_SETS`) loses the videos of the HMDB-51 classes
    that overlap UCF-101 (`psl_hmdb51_ucf101_overlap.txt` in `dear_ray/data/protocols/`, PSL's
    `repeated_clss`), mapped to the store's class ids by name (`hmdb51_class_ids`);
  - a MiT-v2 set (`MIT_SETS`) is evaluated on `PSL_MIT_SUBSETS` = 10 slices and every metric is
    the mean over the 10 (`psl_slices`). PSL's `eval_osr` concatenates the known and the unknown
    scores, keeps the first 3783 rows (`PSL_MIT_KNOWN_ROWS`, UCF-101's test list) as the known
    block of every slice, and cuts the REST into 10 consecutive slices of `int(rest / 10)` rows
    (the remainder dropped). With exactly 3783 known videos that is 10 slices of the unknown
    videos with the whole known set; with more (DEAR's padded files: 3784, 3792) the extra known
    rows fall into the first slice as negatives; `mit_known_rows=None` uses the known store's own
    size instead. Rows are in video-id order (an imported file: its row order; a list sorted by
    path: the list order), `mit_order="shuffled"` slices a seeded permutation of the unknown
    videos instead (`seed`, shared by every method);
  - any other set (the demo's `unknown`) is evaluated whole.
  Known-split metrics (top-1, ECE, `shifted_top1`, the static-bias `scuba_top1`, `scufo_top1`,
  `contrast_acc`) are the `dear` ones; `open_maf1`, `binarized_auc` and `threshold` are NaN (no
  threshold). Intervals: the same paired percentile bootstrap as `dear`, on each subsample with
  the known set, then averaged like the metric.

Which store is which: the unknown store's `StoreMeta.dataset` (the `data.unknown` key, as
`dear-ray data lists` names the sets: `hmdb51`, `mit_v2`). Stores carry class ids, not names:
`hmdb_order="lists"` reads them in the order `dear-ray data lists hmdb51` writes (sorted
`<class>_test_split<N>.txt` names), `"mmaction2"` in MMAction2's (sorted class folders, DEAR's and
PSL's lists); a store that records its order (`StoreMeta.extra["class_order"]`, imported DEAR /
PSL files: `mmaction2`) is read in it. PSL removes class ids `[35, 29, 15, 26, 30, 34, 43, 31]`
in MMAction2's order; here the 8 names are mapped to ids, which are the same in both orders
(15, 26, 29, 30, 31, 34, 35, 43), so both give PSL's rows.
"""

from __future__ import annotations

import dataclasses
from importlib import resources

import numpy as np

from dear_ray.metrics.bootstrap import (
    BootstrapResult,
    _ece,
    _indices,
    _mean_class_accuracy,
    ranking_metrics,
    static_bias_resamples,
)
from dear_ray.metrics.ood import ood_metrics, open_auc, threshold_from_train
from dear_ray.metrics.report import BINARIZED, OpenSetReport, binarized_metrics
from dear_ray.scores import ScoreStore

PROTOCOLS = ("dear", "psl")
HMDB_SETS = ("hmdb51",)
MIT_SETS = ("mit_v2",)
PSL_MIT_SUBSETS = 10
PSL_MIT_KNOWN_ROWS = 3783  # PSL's eval_osr: `y_true[:3783]`, UCF-101's split-1 test videos
PSL_KNOWN_CUT = 0.85  # PSL's "specific threshold" of its own and OpenMax files: 85% of known test
MIT_ORDERS = ("released", "shuffled")
HMDB_ORDERS = ("lists", "mmaction2")
OVERLAP_FILE = "psl_hmdb51_ucf101_overlap.txt"
HMDB_CLASSES_FILE = "hmdb51_classes.txt"
# metrics without a threshold: what `psl` reports about an unknown set
_THRESHOLD_FREE = ("auroc", "aupr_in_ap", "aupr_out_ap", "aupr_in_trapz", "aupr_out_trapz",
                   "fpr_at_95_tpr_first", "fpr_at_95_tpr_nearest", "open_auc")
_NO_THRESHOLD = ("open_maf1",)


def check_protocol(protocol: str) -> str:
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol={protocol!r}; expected one of {', '.join(PROTOCOLS)}")
    return protocol


def _data_lines(name: str) -> list[list[str]]:
    text = resources.files("dear_ray.data").joinpath("protocols", name).read_text(encoding="utf-8")
    return [line.split() for line in text.splitlines() if line.strip() and not line.startswith("#")]


def hmdb51_classes(order: str = "lists") -> list[str]:
    """HMDB-51's 51 class names; index = class id in `order` (`lists` or `mmaction2`)."""
    if order not in HMDB_ORDERS:
        raise ValueError(f"hmdb_order={order!r}; expected one of {', '.join(HMDB_ORDERS)}")
    names = [fields[0] for fields in _data_lines(HMDB_CLASSES_FILE)]
    return names if order == "mmaction2" else sorted(names, key=lambda n: f"{n}_test_split1.txt")


def psl_overlap_classes() -> list[str]:
    """The HMDB-51 class names PSL removes (in PSL's `repeated_clss` order)."""
    return [fields[0] for fields in _data_lines(OVERLAP_FILE)]


def hmdb51_class_ids(names, order: str = "lists") -> np.ndarray:
    """The class ids of HMDB-51 class `names` in `order`; an unknown name is an error."""
    classes = hmdb51_classes(order)
    missing = [n for n in names if n not in classes]
    if missing:
        raise ValueError(f"not HMDB-51 class names: {missing}")
    return np.array([classes.index(n) for n in names], dtype=np.int64)


def subset_store(store: ScoreStore, keep) -> ScoreStore:
    """A copy of `store` with only the rows where `keep` `(N,)` is True."""
    keep = np.asarray(keep, dtype=bool)
    pick = lambda a: None if a is None else a[keep]  # noqa: E731
    return dataclasses.replace(
        store, video_ids=store.video_ids[keep], labels=store.labels[keep], preds=store.preds[keep],
        logits=pick(store.logits), features=pick(store.features), decisions=pick(store.decisions),
        sample_logits=None if store.sample_logits is None else store.sample_logits[:, keep],
        scores={k: v[keep] for k, v in store.scores.items()})


def psl_unknown(store: ScoreStore, *, hmdb_order: str = "lists") -> ScoreStore:
    """The unknown store as PSL evaluates it: an HMDB-51 set without its UCF-101-overlap classes
    (class ids in the store's recorded `class_order`, else `hmdb_order`)."""
    if store.meta.dataset not in HMDB_SETS:
        return store
    drop = hmdb51_class_ids(psl_overlap_classes(), store.meta.extra.get("class_order", hmdb_order))
    return subset_store(store, ~np.isin(store.labels, drop))


@dataclasses.dataclass(frozen=True)
class PslSlice:
    """One of PSL's evaluation sets: indices into a report's known and unknown videos."""

    known: np.ndarray
    unknown: np.ndarray


def psl_slices(known_ids, unknown_ids, dataset: str, *, mit_order: str = "released", seed: int = 0,
               mit_known_rows: int | None = PSL_MIT_KNOWN_ROWS) -> list[PslSlice]:
    """PSL's evaluation sets of one known / unknown pair: 10 slices for a MiT-v2 set (module
    docstring), else one with every video.

    Args:
        known_ids, unknown_ids: the video ids, in the report's order (indices refer to it).
        dataset: the unknown set's name.
        mit_order: `released` (video-id order) or `shuffled` (a permutation of the unknown
            videos seeded with `seed`).
        mit_known_rows: the rows of the known block (PSL's 3783), or None: every known video.

    Depends only on the ids (and `seed` when shuffled), so every method gets the same.
    """
    if mit_order not in MIT_ORDERS:
        raise ValueError(f"mit_order={mit_order!r}; expected one of {', '.join(MIT_ORDERS)}")
    nk, nu = len(known_ids), len(unknown_ids)
    if dataset not in MIT_SETS:
        return [PslSlice(np.arange(nk), np.arange(nu))]
    unknown_order = np.argsort(np.asarray(unknown_ids).astype(str), kind="stable")
    if mit_order == "shuffled":
        unknown_order = unknown_order[np.random.default_rng([seed, nu]).permutation(nu)]
    rows = np.concatenate([np.argsort(np.asarray(known_ids).astype(str), kind="stable"), nk + unknown_order])
    head = nk if mit_known_rows is None else int(mit_known_rows)
    size = (rows.size - head) // PSL_MIT_SUBSETS
    if head < 1 or size < 1:
        raise ValueError(f"{nk} known and {nu} MiT-v2 videos cannot make a known block of {head} rows and "
                         f"{PSL_MIT_SUBSETS} slices")
    out = []
    for i in range(PSL_MIT_SUBSETS):
        part = np.concatenate([rows[:head], rows[head + i * size: head + (i + 1) * size]])
        out.append(PslSlice(known=part[part < nk], unknown=part[part >= nk] - nk))
    return out


def psl_threshold(report: OpenSetReport) -> float:
    """The threshold of PSL's "specific threshold" table: the report's own (DEAR's) when it has
    one, else the 85% cut of its known test scores (`desc[N - int(0.85 N) - 1]`, the rank of
    `get_threshold.py`)."""
    thr = report.metrics.get("threshold", float("nan"))
    if np.isfinite(thr):
        return float(thr)
    return threshold_from_train(report.known_scores, PSL_KNOWN_CUT, rank="get_threshold")


def psl_metrics(report: OpenSetReport, slices: list[PslSlice]) -> dict[str, float]:
    """`report`'s metrics under PSL's protocol: the threshold-free ones and the `BINARIZED` ones at
    `psl_threshold` (reported as `threshold`), each the mean over `slices`; `open_maf1` NaN."""
    thr = psl_threshold(report)
    known_rejected, unknown_rejected = report.known_scores > thr, report.unknown_scores > thr
    parts = []
    for part in slices:
        ks, us = report.known_scores[part.known], report.unknown_scores[part.unknown]
        parts.append({**ood_metrics(ks, us),
                      "open_auc": open_auc(report.known_labels[part.known], report.known_preds[part.known], ks, us),
                      **binarized_metrics(known_rejected[part.known], unknown_rejected[part.unknown])})
    out = dict(report.metrics)
    out.update({key: float(np.mean([p[key] for p in parts])) for key in (*_THRESHOLD_FREE, *BINARIZED.values())})
    out.update({key: float("nan") for key in _NO_THRESHOLD})
    out["threshold"] = thr
    return out


def _sorted_draws(rows: np.ndarray, ids, split: str, resamples: int, seed: int) -> np.ndarray:
    """Resampled `rows` (indices), drawn over the rows sorted by video id (so two reports on the
    same videos draw alike)."""
    rows = rows[np.argsort(np.asarray(ids)[rows], kind="stable")]
    return rows[_indices(split, rows.size, resamples, seed)]


def psl_bootstrap(report: OpenSetReport, slices: list[PslSlice], *, resamples: int,
                  seed: int = 0, mean_class: str = "mmaction2") -> BootstrapResult:
    """Resampled `psl_metrics`: the known videos resampled as in `bootstrap_report` (same draws, so
    `dear` and `psl` rows pair alike), each slice's known and unknown videos resampled on their
    own (the same draws as the whole set when a slice holds every known video), the metrics of
    the slices averaged per resample."""
    known_order = np.argsort(report.known_ids, kind="stable")
    ki = known_order[_indices("known", len(report.known_ids), resamples, seed)]
    ks, us = report.known_scores, report.unknown_scores
    out = {"closed_top1": report.correct[ki].mean(axis=1), "closed_top5": report.top5_hit[ki].mean(axis=1),
           "closed_mean_class_acc": _mean_class_accuracy(report.known_labels, report.known_preds, ki, mean_class),
           "ece": _ece(report.confidence, report.correct, ki)}
    ceiling = np.nextafter(max(ks.max(), us.max()), np.inf)
    thr = psl_threshold(report)
    known_rejected, unknown_rejected = (ks > thr).astype(np.float64), (us > thr).astype(np.float64)
    parts = []
    for part in slices:
        kis = _sorted_draws(part.known, report.known_ids, "known", resamples, seed)
        uis = _sorted_draws(part.unknown, report.unknown_ids, "unknown", resamples, seed)
        pos, neg = ranking_metrics(us, ks, uis, kis), ranking_metrics(-ks, -us, kis, uis)
        rejected = ranking_metrics(unknown_rejected, known_rejected, uis, kis)
        parts.append({"auroc": pos["auroc"], "aupr_out_ap": pos["ap"], "aupr_in_ap": neg["ap"],
                      "aupr_out_trapz": pos["trapz"], "aupr_in_trapz": neg["trapz"],
                      "fpr_at_95_tpr_first": pos["fpr_first"], "fpr_at_95_tpr_nearest": pos["fpr_nearest"],
                      "open_auc": ranking_metrics(us, np.where(report.correct, ks, ceiling), uis, kis)["auroc"],
                      "binarized_auc": rejected["auroc"], "binarized_aupr_out_trapz": rejected["trapz"],
                      "binarized_fpr_at_95_tpr_nearest": rejected["fpr_nearest"]})
    out.update({key: np.mean([p[key] for p in parts], axis=0) for key in (*_THRESHOLD_FREE, *BINARIZED.values())})
    ids = {"known": tuple(np.asarray(report.known_ids)[known_order]),
           "unknown": tuple(np.asarray(report.unknown_ids)[np.argsort(report.unknown_ids, kind="stable")])}
    if report.shifted_correct is not None:
        order = np.argsort(report.shifted_ids, kind="stable")
        si = order[_indices("test_shifted", len(order), resamples, seed)]
        out["shifted_top1"] = report.shifted_correct[si].mean(axis=1)
        out["static_bias_gap"] = out["closed_top1"] - out["shifted_top1"]
        ids["shifted"] = tuple(np.asarray(report.shifted_ids)[order])
    static, static_ids = static_bias_resamples(report, resamples=resamples, seed=seed)
    out.update(static)
    ids.update(static_ids)
    return BootstrapResult(values=out, curve_f1=np.empty((0, 0)), ids=ids)
