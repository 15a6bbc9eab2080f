"""Threshold-free and thresholded unknown detection (SPEC 2); unknown is the positive class.

`scores` are uncertainties: higher = more likely unknown.
"""

from __future__ import annotations

import numpy as np
from sklearn.metrics import average_precision_score, roc_auc_score, roc_curve

from dear_ray.metrics._checks import labels_1d, positive_int, same_length, scores_1d


def openness(num_known: int, num_unknown):
    """Openness `O = 1 - sqrt(2K / (2K + n))` (Scheirer et al. 2013), a fraction in [0, 1).

    Args:
        num_known: K, the number of known (training) classes.
        num_unknown: n, the number of unknown classes at test time (int or array).
    """
    k = positive_int(num_known, "num_known")
    n = np.asarray(num_unknown, dtype=np.float64)
    if np.any(n < 0):
        raise ValueError(f"num_unknown must be >= 0, got {num_unknown!r}")
    out = 1.0 - np.sqrt(2 * k / (2 * k + n))
    return float(out) if out.ndim == 0 else out


def threshold_from_train(train_scores, accept: float = 0.95) -> float:
    """DEAR's threshold: the `(N - floor(accept N))`-th largest training uncertainty.

    About `accept` of the known training videos have a score <= the threshold; test samples with
    score > threshold are rejected as unknown.
    """
    scores = scores_1d(train_scores, "train_scores")
    if not 0.0 < accept < 1.0:
        raise ValueError(f"accept={accept!r}; expected a fraction in (0, 1)")
    n = scores.size
    rank = n - int(np.floor(accept * n))  # >= 1
    return float(np.sort(scores)[::-1][rank - 1])


def _binary(known_scores, unknown_scores) -> tuple[np.ndarray, np.ndarray]:
    known = scores_1d(known_scores, "known_scores")
    unknown = scores_1d(unknown_scores, "unknown_scores")
    y = np.concatenate([np.zeros(known.size, np.int8), np.ones(unknown.size, np.int8)])
    return y, np.concatenate([known, unknown])


def ood_metrics(known_scores, unknown_scores, *, tpr: float = 0.95) -> dict[str, float]:
    """AUROC, AUPR-in, AUPR-out and FPR at `tpr` TPR.

    Returns:
        `auroc` (sklearn `roc_auc_score`, unknown positive), `aupr_out` (average precision with
        unknown positive), `aupr_in` (average precision with known positive on `-score`), and
        `fpr_at_95_tpr`: the fraction of known samples scored at or above the largest threshold
        that still flags `tpr` of the unknown samples.
    """
    y, s = _binary(known_scores, unknown_scores)
    fpr, tprs, _ = roc_curve(y, s, drop_intermediate=False)
    return {
        "auroc": float(roc_auc_score(y, s)),
        "aupr_in": float(average_precision_score(1 - y, -s)),
        "aupr_out": float(average_precision_score(y, s)),
        "fpr_at_95_tpr": float(fpr[np.searchsorted(tprs, tpr, side="left")]),
    }


def binarized_auc(known_scores, unknown_scores, threshold: float) -> float:
    """The DEAR paper's "open-set AUC": `roc_auc_score(is_unknown, 1[u > threshold])`.

    This is the balanced accuracy of rejection at the threshold, not an AUROC.
    """
    y, s = _binary(known_scores, unknown_scores)
    if not np.isfinite(threshold):
        raise ValueError(f"threshold={threshold!r}; expected a finite number")
    return float(roc_auc_score(y, (s > threshold).astype(np.int8)))


def open_auc(known_labels, known_preds, known_scores, unknown_scores) -> float:
    """OpenAUC (Wang et al. 2022): P(a known sample is correctly classified AND scored below an unknown).

    A misclassified known sample gets a score above every unknown one, so it never counts as a
    success; ties between a correct known and an unknown count one half (as in AUROC).
    """
    labels = labels_1d(known_labels, "known_labels")
    preds = labels_1d(known_preds, "known_preds")
    known = scores_1d(known_scores, "known_scores")
    unknown = scores_1d(unknown_scores, "unknown_scores")
    same_length(known_labels=labels, known_preds=preds, known_scores=known)
    ceiling = np.nextafter(max(known.max(), unknown.max()), np.inf)  # strictly above every score
    y, s = _binary(np.where(preds == labels, known, ceiling), unknown)
    return float(roc_auc_score(y, s))
