"""95% intervals of the results table: a seeded, vectorised bootstrap over test videos
(docs/metrics.md).

One run's metrics vary with the sample of videos it was tested on. Each resample draws, with
replacement, as many known test videos, unknown videos and `test_shifted` videos as there are
(the three splits independently; unknown videos iid over the whole unknown set, not per class;
`test_scuba`, `test_scufo` and their pairs likewise, `dear_ray.metrics.static_bias`), and
recomputes every metric of `METRIC_KEYS` on it; the interval is the 2.5th and 97.5th percentile of
the resampled values (percentile bootstrap). The threshold is a property of the TRAINING set and is
not resampled (it has no interval).

Pairing: resample indices refer to the videos sorted by video id and depend only on the seed,
the split and its size, so two reports on the same videos (two methods, two trials of one data set)
see the SAME resamples; `paired_difference` then gives the bootstrap interval of a difference
between methods, which is far narrower than the two marginal intervals suggest.

Speed: a resample is a histogram of counts per distinct score value, so AUROC, AP, the trapezoidal
AUPR and both FPR@95 rules are cumulative sums over `(B, distinct values)` arrays, and the
open-set macro-F1 of every class subset is one batched matrix product per chunk of resamples. The
openness curve costs `rows x U x (K+1)` per resample (rows = subsets, U unknown classes), so it
gets its own, smaller resample count (`curve_resamples`, the first of the same resamples).
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np

from dear_ray.metrics.ood import openness
from dear_ray.metrics.openset import ClassCounts, _per_trial, _subset_matrix, macro_f1_of_subsets
from dear_ray.metrics.report import BINARIZED, METRIC_KEYS, OpenSetReport
from dear_ray.metrics.static_bias import PAIRING_SPLITS, resample_static_bias

DEFAULT_RESAMPLES = 1000
DEFAULT_CURVE_RESAMPLES = 200
CI_LEVEL = 0.95
CI_KEYS = tuple(k for k in METRIC_KEYS if k != "threshold")  # the threshold is fixed by the train set
_CELLS = 4_000_000  # cells of a (chunk, distinct values) or (chunk, rows, K+1) array at a time


@dataclass(frozen=True)
class Resamples:
    """Bootstrap indices into each split's videos SORTED BY VIDEO ID.

    Attributes:
        known: `(B, Nk)`; unknown: `(B, Nu)`; shifted: `(B, Ns)` or None.
    """

    known: np.ndarray
    unknown: np.ndarray
    shifted: np.ndarray | None

    @property
    def size(self) -> int:
        return int(self.known.shape[0])


def _indices(split: str, n: int, resamples: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng([seed, zlib.crc32(split.encode()), n])
    return rng.integers(0, n, size=(resamples, n))


def draw_resamples(report: OpenSetReport, *, resamples: int = DEFAULT_RESAMPLES, seed: int = 0) -> Resamples:
    """The resamples of `report`'s splits (the same for every report with the same split sizes)."""
    if resamples < 1:
        raise ValueError(f"resamples={resamples}; expected a positive integer")
    shifted = None if report.shifted_ids is None else _indices("test_shifted", len(report.shifted_ids), resamples, seed)
    return Resamples(known=_indices("known", len(report.known_ids), resamples, seed),
                     unknown=_indices("unknown", len(report.unknown_ids), resamples, seed), shifted=shifted)


def static_bias_resamples(report: OpenSetReport, *, resamples: int,
                          seed: int) -> tuple[dict[str, np.ndarray], dict[str, tuple]]:
    """`scuba_top1`, `scufo_top1`, `contrast_acc` on `resamples` resamples of the report's SCUBA,
    SCUFO and paired videos (drawn as `test_shifted`'s: `_indices` of the seed, the set and its
    size), and the sorted ids they index; empty without those stores."""
    return resample_static_bias(scuba_correct=report.scuba_correct, scuba_ids=report.scuba_ids,
                                scufo_correct=report.scufo_correct, scufo_ids=report.scufo_ids,
                                draw=lambda split, n: _indices(split, n, resamples, seed))


def percentile_interval(values, level: float = CI_LEVEL) -> tuple[float, float]:
    """The `(low, high)` percentile interval of bootstrap values `(B,)` (NaN values ignored)."""
    v = np.asarray(values, dtype=np.float64)
    if not np.any(np.isfinite(v)):
        return float("nan"), float("nan")
    tail = 100 * (1 - level) / 2
    low, high = np.nanpercentile(v, [tail, 100 - tail])
    return float(low), float(high)


def _hist(index: np.ndarray, size: int, weights: np.ndarray | None = None) -> np.ndarray:
    """`(B, size)` counts (or weight sums) of the `(B, N)` indices, row by row."""
    b = index.shape[0]
    flat = (np.arange(b)[:, None] * size + index).ravel()
    w = None if weights is None else weights.ravel()
    return np.bincount(flat, weights=w, minlength=b * size).reshape(b, size).astype(np.float64)


def ranking_metrics(positive, negative, pos_index, neg_index, *, tpr: float = 0.95) -> dict[str, np.ndarray]:
    """Detection metrics of every resample, positives scored higher; each `(B,)`.

    Args:
        positive: `(P,)` scores of the positive class; negative: `(N,)`.
        pos_index: `(B, P')` and neg_index: `(B, N')` resampled indices into them.

    Returns:
        `auroc`, `ap` (average precision), `trapz` (trapezoidal AUPR), `fpr_first`, `fpr_nearest`:
        what `roc_auc_score`, `average_precision_score`, `auc(*precision_recall_curve(...)[::-1])`
        and `ood_metrics`' two FPR rules give on each resampled data set.
    """
    pos, neg = np.asarray(positive, dtype=np.float64), np.asarray(negative, dtype=np.float64)
    values = np.unique(np.concatenate([pos, neg]))
    at_pos, at_neg = np.searchsorted(values, pos), np.searchsorted(values, neg)
    chunk = max(1, _CELLS // values.size)
    parts = [_ranking_chunk(_hist(at_pos[pos_index[i:i + chunk]], values.size)[:, ::-1],
                            _hist(at_neg[neg_index[i:i + chunk]], values.size)[:, ::-1], tpr)
             for i in range(0, pos_index.shape[0], chunk)]
    return {key: np.concatenate([p[key] for p in parts]) for key in parts[0]}


def _ranking_chunk(hp: np.ndarray, hn: np.ndarray, target: float) -> dict[str, np.ndarray]:
    """Metrics from `(B, U)` positive/negative counts per distinct value, DESCENDING values."""
    b, u = hp.shape
    tps, fps = np.cumsum(hp, axis=1), np.cumsum(hn, axis=1)  # predicted positive at score >= value
    p, n = tps[:, -1:], fps[:, -1:]
    auroc = np.sum(hp * (n - fps + 0.5 * hn), axis=1) / (p[:, 0] * n[:, 0])
    tpr, fpr = tps / p, fps / n
    valid = (hp + hn) > 0  # a value with no video in this resample is no threshold of its curve
    recall = tpr
    precision = np.divide(tps, tps + fps, out=np.zeros_like(tps), where=(tps + fps) > 0)
    ap = np.sum(np.diff(recall, axis=1, prepend=0.0) * precision, axis=1)
    # trapezoids from (recall 0, precision 1) along the valid points (an invalid point repeats the
    # previous valid one, so its trapezoid has no width)
    cols = np.arange(u)
    last_valid = np.maximum.accumulate(np.where(valid, cols, -1), axis=1)
    rows = np.arange(b)[:, None]
    r_ff = np.where(last_valid >= 0, recall[rows, np.maximum(last_valid, 0)], 0.0)
    p_ff = np.where(last_valid >= 0, precision[rows, np.maximum(last_valid, 0)], 1.0)
    r_all = np.concatenate([np.zeros((b, 1)), r_ff], axis=1)
    p_all = np.concatenate([np.ones((b, 1)), p_ff], axis=1)
    trapz = np.sum(np.diff(r_all, axis=1) * (p_all[:, 1:] + p_all[:, :-1]) / 2, axis=1)
    fpr_first = fpr[np.arange(b), np.argmax(tpr >= target, axis=1)]
    return {"auroc": auroc, "ap": ap, "trapz": trapz, "fpr_first": fpr_first,
            "fpr_nearest": _fpr_nearest(tps, fps, tpr, fpr, valid, target)}


def _fpr_nearest(tps, fps, tpr, fpr, valid, target: float) -> np.ndarray:
    """DEAR's rule on sklearn's pruned ROC curve (`drop_intermediate=True`) of each resample: the
    valid points, minus interior ones where neither `fps` nor `tps` has a non-zero second
    difference, after the prepended (0, 0) point; `argmin |tpr - target|`, first on ties."""
    b, u = tps.shape
    cols = np.broadcast_to(np.arange(u), (b, u))
    rows = np.arange(b)[:, None]
    prev = np.maximum.accumulate(np.where(valid, cols, -1), axis=1)
    prev = np.concatenate([np.full((b, 1), -1), prev[:, :-1]], axis=1)  # last valid strictly before
    nxt = np.minimum.accumulate(np.where(valid, cols, u)[:, ::-1], axis=1)[:, ::-1]
    nxt = np.concatenate([nxt[:, 1:], np.full((b, 1), u)], axis=1)  # first valid strictly after
    interior = valid & (prev >= 0) & (nxt < u)
    p_, n_ = np.clip(prev, 0, u - 1), np.clip(nxt, 0, u - 1)
    bend = ((fps[rows, n_] - fps) - (fps - fps[rows, p_]) != 0) | ((tps[rows, n_] - tps) - (tps - tps[rows, p_]) != 0)
    keep = valid & (~interior | bend | (valid.sum(axis=1, keepdims=True) <= 2))
    dist = np.where(keep, np.abs(tpr - target), np.inf)
    best = np.argmin(dist, axis=1)
    origin_wins = abs(0.0 - target) <= dist[np.arange(b), best]
    return np.where(origin_wins, 0.0, fpr[np.arange(b), best])


def _mean_class_accuracy(labels, preds, index, form: str) -> np.ndarray:
    size = int(max(labels.max(), preds.max())) + 1
    support = _hist(labels[index], size)
    hits = _hist(labels[index], size, weights=(preds == labels)[index].astype(np.float64))
    present = support > 0
    if form == "mmaction2":
        present |= _hist(preds[index], size) > 0
    recall = np.divide(hits, support, out=np.zeros_like(hits), where=support > 0)
    return np.sum(recall * present, axis=1) / present.sum(axis=1)


def _ece(confidence, correct, index, num_bins: int = 15) -> np.ndarray:
    edges = np.linspace(0.0, 1.0, num_bins + 1)  # as calibration.reliability_bins: right-closed bins
    bins = np.clip(np.searchsorted(edges, confidence, side="left") - 1, 0, num_bins - 1)[index]
    gap = _hist(bins, num_bins, weights=correct.astype(np.float64)[index]) \
        - _hist(bins, num_bins, weights=confidence[index])
    return np.abs(gap).sum(axis=1) / index.shape[1]


def binarized_resamples(report: OpenSetReport, known_index, unknown_index) -> dict[str, np.ndarray]:
    """The `BINARIZED` metrics of the report's open-set decisions (rejected = class K) on
    resamples `(B, Nk')`, `(B, Nu')` of its known and unknown videos."""
    k = report.num_known
    rejected = ranking_metrics((report.unknown_decisions == k).astype(np.float64),
                               (report.known_decisions == k).astype(np.float64), unknown_index, known_index)
    return {"binarized_auc": rejected["auroc"], "binarized_aupr_out_trapz": rejected["trapz"],
            "binarized_fpr_at_95_tpr_nearest": rejected["fpr_nearest"]}


def open_maf1_resamples(report: OpenSetReport, known_index, unknown_index, subsets) -> tuple[np.ndarray, np.ndarray]:
    """Open maF1 `(C,)` and the curve's mean F1 per point `(C, L+1)` of C resamples (indices into
    `report`'s own video order), on the report's shared `subsets`."""
    k = report.num_known
    y, kd = report.known_labels, report.known_decisions
    class_ids, cls = np.unique(report.unknown_classes, return_inverse=True)
    z, trials = _subset_matrix(subsets, class_ids)
    weights = np.asarray(openness(k, np.arange(len(subsets) + 1)))
    rows = z.shape[0] + 1
    chunk = max(1, _CELLS // (rows * (k + 1)))
    maf1, means = [], []
    for i in range(0, known_index.shape[0], chunk):
        ki, ui = known_index[i:i + chunk], unknown_index[i:i + chunk]
        c = ki.shape[0]
        counts = ClassCounts(
            tp_known=_hist(y[ki], k, weights=(kd == y)[ki].astype(np.float64)), support_known=_hist(y[ki], k),
            pred_known=_hist(kd[ki], k + 1),
            per_class=_hist(cls[ui] * (k + 1) + report.unknown_decisions[ui], class_ids.size * (k + 1))
            .reshape(c, class_ids.size, k + 1), class_ids=class_ids)
        f1_mean = _per_trial(macro_f1_of_subsets(counts, z), len(subsets), trials).mean(axis=2)  # (c, L+1)
        means.append(f1_mean)
        maf1.append(f1_mean @ weights / weights.sum())
    return np.concatenate(maf1), np.concatenate(means)


@dataclass(frozen=True)
class BootstrapResult:
    """Resampled metrics of one report.

    Attributes:
        values: key of `CI_KEYS` -> `(B,)` (`open_maf1`: `(C,)`, C = curve resamples).
        curve_f1: `(C, L+1)` the openness curve's mean F1 per point in each resample.
        ids: split -> the sorted video ids the resamples index (pairing key).
    """

    values: dict[str, np.ndarray]
    curve_f1: np.ndarray
    ids: dict[str, tuple]

    def interval(self, key: str, level: float = CI_LEVEL) -> tuple[float, float]:
        return percentile_interval(self.values[key], level)


def bootstrap_report(report: OpenSetReport, subsets, *, resamples: int = DEFAULT_RESAMPLES,
                     curve_resamples: int = DEFAULT_CURVE_RESAMPLES, seed: int = 0,
                     mean_class: str = "mmaction2") -> BootstrapResult:
    """Every metric of `report` on `resamples` bootstrap resamples (open maF1 on the first
    `curve_resamples`), on the same `subsets` the report used."""
    draws = draw_resamples(report, resamples=resamples, seed=seed)
    order = {"known": np.argsort(report.known_ids, kind="stable"),
             "unknown": np.argsort(report.unknown_ids, kind="stable")}
    ki, ui = order["known"][draws.known], order["unknown"][draws.unknown]  # into the report's order
    ks, us = report.known_scores, report.unknown_scores
    out = {"closed_top1": report.correct[ki].mean(axis=1), "closed_top5": report.top5_hit[ki].mean(axis=1),
           "closed_mean_class_acc": _mean_class_accuracy(report.known_labels, report.known_preds, ki, mean_class),
           "ece": _ece(report.confidence, report.correct, ki)}
    c = min(curve_resamples, resamples)
    if report.curve is not None:
        out.update(binarized_resamples(report, ki, ui))
        out["open_maf1"], curve_f1 = open_maf1_resamples(report, ki[:c], ui[:c], subsets)
    else:  # no threshold and no decisions: nothing is rejected, nothing to resample
        out.update({key: np.full(resamples, np.nan) for key in ("open_maf1", *BINARIZED.values())})
        curve_f1 = np.empty((0, 0))
    unknown_positive = ranking_metrics(us, ks, ui, ki)
    known_positive = ranking_metrics(-ks, -us, ki, ui)
    out.update(auroc=unknown_positive["auroc"], aupr_out_ap=unknown_positive["ap"], aupr_in_ap=known_positive["ap"],
               aupr_out_trapz=unknown_positive["trapz"], aupr_in_trapz=known_positive["trapz"],
               fpr_at_95_tpr_first=unknown_positive["fpr_first"], fpr_at_95_tpr_nearest=unknown_positive["fpr_nearest"])
    ceiling = np.nextafter(max(ks.max(), us.max()), np.inf)
    out["open_auc"] = ranking_metrics(us, np.where(report.correct, ks, ceiling), ui, ki)["auroc"]
    ids = {"known": tuple(np.asarray(report.known_ids)[order["known"]]),
           "unknown": tuple(np.asarray(report.unknown_ids)[order["unknown"]])}
    if report.shifted_correct is not None:
        si = np.argsort(report.shifted_ids, kind="stable")[draws.shifted]
        out["shifted_top1"] = report.shifted_correct[si].mean(axis=1)
        out["static_bias_gap"] = out["closed_top1"] - out["shifted_top1"]
        ids["shifted"] = tuple(np.asarray(report.shifted_ids)[np.argsort(report.shifted_ids, kind="stable")])
    static, static_ids = static_bias_resamples(report, resamples=resamples, seed=seed)
    out.update(static)
    ids.update(static_ids)
    return BootstrapResult(values=out, curve_f1=curve_f1, ids=ids)


def paired_difference(result: BootstrapResult, baseline: BootstrapResult, key: str,
                      level: float = CI_LEVEL) -> tuple[float, float] | None:
    """The percentile interval of `result - baseline` for metric `key` over the SAME resamples, or
    None when the two were not tested on the same videos (or lack the metric). With different
    resample counts (a post-hoc row's fewer) the common first resamples pair: the draws depend only
    on the seed, the split and its size, and B draws are the first B of any larger count."""
    if key not in result.values or key not in baseline.values:
        return None
    splits = {"shifted_top1": ("shifted",), "static_bias_gap": ("known", "shifted"), **PAIRING_SPLITS}.get(
        key, ("known",) if key in ("closed_top1", "closed_top5", "closed_mean_class_acc", "ece")
        else ("known", "unknown"))
    if any(result.ids.get(s) is None or result.ids.get(s) != baseline.ids.get(s) for s in splits):
        return None
    a, b = result.values[key], baseline.values[key]
    m = min(a.shape[0], b.shape[0])  # resample i is the same draw in both (a prefix of the same draws)
    if m == 0 or a.shape[1:] != b.shape[1:]:
        return None
    return percentile_interval(a[:m] - b[:m], level)
