"""Threshold-free and thresholded unknown detection (docs/metrics.md); unknown is the positive class.

`scores` are uncertainties: higher = more likely unknown.
"""

from __future__ import annotations

import numpy as np
from sklearn.metrics import auc, average_precision_score, precision_recall_curve, roc_auc_score, roc_curve

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


THRESHOLD_RANKS = ("get_threshold", "baseline_softmax")


def threshold_from_train(train_scores, accept: float = 0.95, *, rank: str = "get_threshold") -> float:
    """The rejection threshold on the known TRAINING videos' uncertainties; reject `score > thr`.

    Args:
        train_scores: `(N,)` training uncertainties (higher = more unknown).
        accept: the fraction of training videos to accept.
        rank: which of DEAR's two released ranks (a = accept, n = int(a N) as Python computes it):
            - `get_threshold` (EDL, DEAR, BALD; `experiments/get_threshold.py`): the `(N - n)`-th
              largest uncertainty, `desc[N - n - 1]`; accepts n + 1 videos (plus ties).
            - `baseline_softmax` (SoftMax, RPL; `baseline_softmax.py`, `baseline_rpl.py`): those
              scripts sort the CONFIDENCES (max softmax) descending and reject `conf <
              desc_conf[n - 1]`; on the uncertainty `u = 1 - conf` that is the n-th smallest
              uncertainty, `asc[n - 1]`, one rank below `get_threshold`; accepts n videos (plus ties).
    """
    scores = scores_1d(train_scores, "train_scores")
    if not 0.0 < accept < 1.0:
        raise ValueError(f"accept={accept!r}; expected a fraction in (0, 1)")
    n = scores.size
    accepted = int(n * accept)  # Python's int(N * 0.95), as both scripts compute it
    ascending = np.sort(scores)
    if rank == "get_threshold":
        return float(ascending[::-1][n - accepted - 1])
    if rank == "baseline_softmax":
        if accepted < 1:
            raise ValueError(f"threshold rank 'baseline_softmax' needs int(N * accept) >= 1, got N={n}, "
                             f"accept={accept}")
        return float(ascending[accepted - 1])
    raise ValueError(f"threshold rank {rank!r}; expected one of {', '.join(THRESHOLD_RANKS)}")


def _binary(known_scores, unknown_scores) -> tuple[np.ndarray, np.ndarray]:
    known = scores_1d(known_scores, "known_scores")
    unknown = scores_1d(unknown_scores, "unknown_scores")
    y = np.concatenate([np.zeros(known.size, np.int8), np.ones(unknown.size, np.int8)])
    return y, np.concatenate([known, unknown])


def ood_metrics(known_scores, unknown_scores, *, tpr: float = 0.95) -> dict[str, float]:
    """Threshold-free detection metrics, under names that say which convention.

    Returns:
        - `auroc`: sklearn `roc_auc_score`, unknown positive.
        - `aupr_out_ap` / `aupr_in_ap`: average precision (sklearn `average_precision_score`) with
          unknown positive on the score / known positive on `-score`.
        - `aupr_out_trapz` / `aupr_in_trapz`: the trapezoidal area `auc(recall, precision)` of
          sklearn's `precision_recall_curve`, as DEAR's `compare_openness_new.py` (its "AUPR"),
          OpenOOD and pytorch-ood compute it; it differs from AP most with tied scores.
        - `fpr_at_95_tpr_first`: the FPR at the first (largest) threshold whose TPR >= `tpr` on the
          full ROC curve (pytorch-ood's rule).
        - `fpr_at_95_tpr_nearest`: the FPR at `argmin |TPR - tpr|` of sklearn's default (pruned,
          `drop_intermediate=True`) ROC curve, first index on ties: DEAR's `compare_openness_new.py`.
    """
    y, s = _binary(known_scores, unknown_scores)
    fpr, tprs, _ = roc_curve(y, s, drop_intermediate=False)
    pruned_fpr, pruned_tpr, _ = roc_curve(y, s)
    return {
        "auroc": float(roc_auc_score(y, s)),
        "aupr_in_ap": float(average_precision_score(1 - y, -s)),
        "aupr_out_ap": float(average_precision_score(y, s)),
        "aupr_in_trapz": _trapezoidal_aupr(1 - y, -s),
        "aupr_out_trapz": _trapezoidal_aupr(y, s),
        "fpr_at_95_tpr_first": float(fpr[np.searchsorted(tprs, tpr, side="left")]),
        "fpr_at_95_tpr_nearest": float(pruned_fpr[np.argmin(np.abs(pruned_tpr - tpr))]),
    }


def _trapezoidal_aupr(y: np.ndarray, s: np.ndarray) -> float:
    precision, recall, _ = precision_recall_curve(y, s)
    return float(auc(recall, precision))


def binarized_auc(known_scores, unknown_scores, threshold: float) -> float:
    """The DEAR paper's "open-set AUC": `roc_auc_score(is_unknown, 1[u > threshold])`.

    This is the balanced accuracy of rejection at the threshold, not an AUROC.
    """
    y, s = _binary(known_scores, unknown_scores)
    if not np.isfinite(threshold):
        raise ValueError(f"threshold={threshold!r}; expected a finite number")
    return float(roc_auc_score(y, (s > threshold).astype(np.int8)))


def binarized_auc_of_decisions(known_rejected, unknown_rejected) -> float:
    """`roc_auc_score(is_unknown, rejected)` for given boolean decisions `(Nk,)`, `(Nu,)`.

    OpenMax's form (DEAR `baseline_openmax.py`, `compare_openness_new.py` `score='binary'`): the
    decision is the argmax over K+1 classes landing on the unknown class, no threshold.
    """
    known = np.asarray(known_rejected, dtype=bool).ravel()
    unknown = np.asarray(unknown_rejected, dtype=bool).ravel()
    if known.size == 0 or unknown.size == 0:
        raise ValueError(f"binarized_auc_of_decisions: known ({known.size}) and unknown ({unknown.size}) "
                         "decisions must be non-empty")
    y = np.concatenate([np.zeros(known.size, np.int8), np.ones(unknown.size, np.int8)])
    return float(roc_auc_score(y, np.concatenate([known, unknown]).astype(np.int8)))


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
