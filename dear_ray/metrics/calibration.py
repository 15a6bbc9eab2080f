"""Expected calibration error and reliability-diagram bins (docs/metrics.md; Guo et al. 2017)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dear_ray.metrics._checks import positive_int, same_length, scores_1d


@dataclass(frozen=True)
class ReliabilityBins:
    """Equal-width confidence bins on [0, 1].

    Attributes:
        edges: `(B+1,)` bin edges; bin b holds confidences in (edges[b], edges[b+1]] (bin 0 also 0).
        confidence: `(B,)` mean confidence per bin (NaN for an empty bin).
        accuracy: `(B,)` fraction correct per bin (NaN for an empty bin).
        count: `(B,)` samples per bin.
    """

    edges: np.ndarray
    confidence: np.ndarray
    accuracy: np.ndarray
    count: np.ndarray


def reliability_bins(confidences, correct, *, num_bins: int = 15) -> ReliabilityBins:
    """Bin predictions by confidence.

    Args:
        confidences: `(N,)` in [0, 1], given by the caller (e.g. `1 - u` or the MSP).
        correct: `(N,)` booleans (or 0/1), whether the closed-set prediction is right.
        num_bins: number of equal-width bins.
    """
    conf = scores_1d(confidences, "confidences")
    if conf.min() < 0 or conf.max() > 1:
        raise ValueError(f"confidences: must lie in [0, 1], got range [{conf.min():g}, {conf.max():g}]")
    hit = np.asarray(correct)
    if hit.ndim != 1 or not np.all(np.isin(hit, (0, 1))):
        raise ValueError("correct: expected a 1-D array of booleans or 0/1")
    same_length(confidences=conf, correct=hit)
    bins = positive_int(num_bins, "num_bins")
    edges = np.linspace(0.0, 1.0, bins + 1)
    index = np.clip(np.searchsorted(edges, conf, side="left") - 1, 0, bins - 1)
    count = np.bincount(index, minlength=bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_conf = np.bincount(index, weights=conf, minlength=bins) / count
        acc = np.bincount(index, weights=hit.astype(np.float64), minlength=bins) / count
    return ReliabilityBins(edges=edges, confidence=mean_conf, accuracy=acc, count=count)


def ece(confidences, correct, *, num_bins: int = 15) -> float:
    """Expected calibration error: `sum_b (n_b / N) |acc_b - conf_b|` over non-empty bins.

    Bin edges: equal-width and RIGHT-closed, bin b = (b/B, (b+1)/B], as DEAR's
    `experiments/evaluate_calibration.py` (`conf > lo & conf <= hi`), except that a confidence of
    exactly 0 falls in bin 0 here and in no bin in DEAR's script. torchmetrics'
    `calibration_error` bins LEFT-closed ([lo, hi), 1.0 in the last bin): values on an edge land
    one bin apart.
    """
    rb = reliability_bins(confidences, correct, num_bins=num_bins)
    full = rb.count > 0
    return float(np.sum(rb.count[full] / rb.count.sum() * np.abs(rb.accuracy[full] - rb.confidence[full])))
