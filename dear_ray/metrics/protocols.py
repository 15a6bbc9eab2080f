"""Open-set evaluation protocols (`eval.protocol`): `dear` and `psl` (issue 12).

- `dear` (DEAR's `compare_openness_new.py`, the default): every unknown set on its own, the
  threshold from the training split, open maF1 over the openness curve, binarised AUC, plus the
  threshold-free metrics (`dear_ray.metrics.report.open_set_report`).
- `psl` (Jun-CEN/PSL `evaluation_code/experiments/compare_openness_new_{hmdb,mit}*.py`): only
  threshold-free metrics (AUROC, AUPR, FPR@95: PSL's AUPR is `aupr_out_trapz`, its FPR@95
  `fpr_at_95_tpr_nearest`; every convention of the table is still given), and per set:
  - an HMDB-51 set (unknown store dataset in `HMDB_SETS`) loses the videos of the HMDB-51 classes
    that overlap UCF-101 (`psl_hmdb51_ucf101_overlap.txt` in `dear_ray/data/protocols/`, PSL's
    `repeated_clss`), mapped to the store's class ids by name (`hmdb51_class_ids`);
  - a MiT-v2 set (`MIT_SETS`) is evaluated on `PSL_MIT_SUBSETS` = 10 disjoint subsamples of
    `int(N / 10)` unknown videos each (the remainder is dropped), the full known test set with
    each, and every metric is the mean over the 10. PSL's subsamples are consecutive slices of
    the unknown videos in list order (its `eval_osr`); here (`mit_order="released"`) they are
    consecutive slices of the videos SORTED BY VIDEO ID, which is identical for every method and
    equals the list order when the list is sorted by path; `mit_order="shuffled"` slices a
    seeded permutation of the sorted ids instead (`seed`, shared by every method);
  - any other set (the demo's `unknown`) is evaluated whole.
  Known-split metrics (top-1, ECE, `shifted_top1`, the static-bias `scuba_top1`, `scufo_top1`,
  `contrast_acc`) are the `dear` ones; `open_maf1`, `binarized_auc` and `threshold` are NaN (no
  threshold). Intervals: the same paired percentile bootstrap as `dear`, on each subsample with
  the known set, then averaged like the metric.

Which store is which: the unknown store's `StoreMeta.dataset` (the `data.unknown` key, as
`dear-ray data lists` names the sets: `hmdb51`, `mit_v2`). Stores carry class ids, not names:
`hmdb_order="lists"` reads them in the order `dear-ray data lists hmdb51` writes (sorted
`<class>_test_split<N>.txt` names), `"mmaction2"` in MMAction2's (sorted class folders, DEAR's and
PSL's lists). The 8 overlapping classes have the same ids in both (15, 26, 29, 30, 31, 34, 35, 43).
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
from dear_ray.metrics.ood import ood_metrics, open_auc
from dear_ray.metrics.report import OpenSetReport
from dear_ray.scores import ScoreStore

PROTOCOLS = ("dear", "psl")
HMDB_SETS = ("hmdb51",)
MIT_SETS = ("mit_v2",)
PSL_MIT_SUBSETS = 10
MIT_ORDERS = ("released", "shuffled")
HMDB_ORDERS = ("lists", "mmaction2")
OVERLAP_FILE = "psl_hmdb51_ucf101_overlap.txt"
HMDB_CLASSES_FILE = "hmdb51_classes.txt"
# metrics without a threshold: what `psl` reports about an unknown set
_THRESHOLD_FREE = ("auroc", "aupr_in_ap", "aupr_out_ap", "aupr_in_trapz", "aupr_out_trapz",
                   "fpr_at_95_tpr_first", "fpr_at_95_tpr_nearest", "open_auc")
_NO_THRESHOLD = ("open_maf1", "binarized_auc", "threshold")


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
    return dataclasses.replace(
        store, video_ids=store.video_ids[keep], labels=store.labels[keep], preds=store.preds[keep],
        logits=store.logits[keep], features=None if store.features is None else store.features[keep],
        sample_logits=None if store.sample_logits is None else store.sample_logits[:, keep],
        scores={k: v[keep] for k, v in store.scores.items()})


def psl_unknown(store: ScoreStore, *, hmdb_order: str = "lists") -> ScoreStore:
    """The unknown store as PSL evaluates it: an HMDB-51 set without its UCF-101-overlap classes."""
    if store.meta.dataset not in HMDB_SETS:
        return store
    drop = hmdb51_class_ids(psl_overlap_classes(), hmdb_order)
    return subset_store(store, ~np.isin(store.labels, drop))


def psl_subsamples(store: ScoreStore, *, mit_order: str = "released", seed: int = 0) -> list[np.ndarray]:
    """Row indices of each subsample of an unknown store: PSL's 10 for a MiT-v2 set, else one (all).

    Depends only on the video ids (and `seed` when shuffled), so every method gets the same.
    """
    if mit_order not in MIT_ORDERS:
        raise ValueError(f"mit_order={mit_order!r}; expected one of {', '.join(MIT_ORDERS)}")
    n = len(store)
    if store.meta.dataset not in MIT_SETS:
        return [np.arange(n)]
    size = n // PSL_MIT_SUBSETS
    if size < 1:
        raise ValueError(f"{store.path}: {n} MiT-v2 videos cannot make {PSL_MIT_SUBSETS} subsamples")
    order = np.argsort(store.video_ids.astype(str), kind="stable")
    if mit_order == "shuffled":
        order = order[np.random.default_rng([seed, n]).permutation(n)]
    return [order[i * size:(i + 1) * size] for i in range(PSL_MIT_SUBSETS)]


def psl_metrics(report: OpenSetReport, subsamples: list[np.ndarray]) -> dict[str, float]:
    """`report`'s metrics with the threshold-free ones averaged over `subsamples` (indices into
    the report's unknown videos) and the thresholded ones NaN."""
    ks, us = report.known_scores, report.unknown_scores
    parts = [{**ood_metrics(ks, us[rows]), "open_auc": open_auc(report.known_labels, report.known_preds, ks, us[rows])}
             for rows in subsamples]
    out = dict(report.metrics)
    out.update({key: float(np.mean([p[key] for p in parts])) for key in _THRESHOLD_FREE})
    out.update({key: float("nan") for key in _NO_THRESHOLD})
    return out


def psl_bootstrap(report: OpenSetReport, subsamples: list[np.ndarray], *, resamples: int,
                  seed: int = 0, mean_class: str = "mmaction2") -> BootstrapResult:
    """Resampled `psl_metrics`: the known videos resampled as in `bootstrap_report` (same draws, so
    `dear` and `psl` rows pair alike), each subsample's unknown videos resampled on their own, the
    threshold-free metrics averaged over subsamples per resample."""
    known_order = np.argsort(report.known_ids, kind="stable")
    ki = known_order[_indices("known", len(report.known_ids), resamples, seed)]
    ks, us = report.known_scores, report.unknown_scores
    out = {"closed_top1": report.correct[ki].mean(axis=1), "closed_top5": report.top5_hit[ki].mean(axis=1),
           "closed_mean_class_acc": _mean_class_accuracy(report.known_labels, report.known_preds, ki, mean_class),
           "ece": _ece(report.confidence, report.correct, ki)}
    ceiling = np.nextafter(max(ks.max(), us.max()), np.inf)
    parts = []
    for rows in subsamples:
        rows = rows[np.argsort(report.unknown_ids[rows], kind="stable")]
        ui = rows[_indices("unknown", rows.size, resamples, seed)]
        pos, neg = ranking_metrics(us, ks, ui, ki), ranking_metrics(-ks, -us, ki, ui)
        parts.append({"auroc": pos["auroc"], "aupr_out_ap": pos["ap"], "aupr_in_ap": neg["ap"],
                      "aupr_out_trapz": pos["trapz"], "aupr_in_trapz": neg["trapz"],
                      "fpr_at_95_tpr_first": pos["fpr_first"], "fpr_at_95_tpr_nearest": pos["fpr_nearest"],
                      "open_auc": ranking_metrics(us, np.where(report.correct, ks, ceiling), ui, ki)["auroc"]})
    out.update({key: np.mean([p[key] for p in parts], axis=0) for key in _THRESHOLD_FREE})
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
