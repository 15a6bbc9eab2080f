"""BALD, the mutual information of T stochastic passes (MC dropout, BNN; docs/methods.md, Houlsby
et al. 2011).

BALD = H[mean_t p_t] - mean_t H[p_t] >= 0 (Jensen): the part of the predictive entropy that comes
from disagreement between the passes. Higher = more likely unknown.
"""

from __future__ import annotations

import numpy as np
from scipy.special import log_softmax

from dear_ray.scores._checks import as_logits


def _entropy_of(p: np.ndarray, log_p: np.ndarray) -> np.ndarray:
    # 0 log 0 = 0: p underflows to 0 exactly where log p is very negative
    return -np.sum(np.where(p > 0, p * log_p, 0.0), axis=-1)


def bald(sample_logits) -> np.ndarray:
    """BALD of stochastic passes.

    Args:
        sample_logits: logits of each pass, `(S, N, K)` (S stochastic passes, views averaged
            within a pass).

    Returns:
        `(N,)` mutual information in nats, in [0, log K].
    """
    z = as_logits(sample_logits, "sample_logits", ndim=3)
    log_p = log_softmax(z, axis=-1)  # (S, N, K)
    p = np.exp(log_p)
    mean_p = p.mean(axis=0)  # (N, K)
    with np.errstate(divide="ignore"):
        log_mean_p = np.log(mean_p)
    total = _entropy_of(mean_p, log_mean_p)
    expected = _entropy_of(p, log_p).mean(axis=0)
    # the difference can dip a few ulps below 0 when all passes agree
    return np.maximum(total - expected, 0.0)
