"""Scores of a softmax classifier's logits (docs/methods.md: `softmax`, `rpl`, `sdn` heads).

Every function maps logits `(N, K)` to uncertainties `(N,)` with one sign convention: higher means
more likely unknown.
"""

from __future__ import annotations

import numpy as np
from scipy.special import logsumexp, softmax

from dear_ray.scores._checks import as_logits


def softmax_probs(logits) -> np.ndarray:
    """Softmax probabilities `(N, K)` of logits `(N, K)` (numerically stable)."""
    return softmax(as_logits(logits), axis=-1)


def msp(logits) -> np.ndarray:
    """`1 - max_k softmax(z)_k`, shape `(N,)`, in [0, 1 - 1/K]."""
    return 1.0 - softmax_probs(logits).max(axis=-1)


def entropy(logits) -> np.ndarray:
    """Predictive entropy `-sum_k p_k log p_k` in nats, shape `(N,)`, in [0, log K]."""
    z = as_logits(logits)
    log_p = z - logsumexp(z, axis=-1, keepdims=True)
    return -np.sum(np.exp(log_p) * log_p, axis=-1)


def energy(logits) -> np.ndarray:
    """Free energy `-logsumexp_k z_k` (Liu et al. 2020), shape `(N,)`, unbounded."""
    return -logsumexp(as_logits(logits), axis=-1)


def maxlogit(logits) -> np.ndarray:
    """Negative maximum logit `-max_k z_k` (Hendrycks et al. 2022), shape `(N,)`."""
    return -as_logits(logits).max(axis=-1)


def rpl(logits) -> np.ndarray:
    """RPL's score: `1 - MSP` of the softmax over the reciprocal-point logits
    (docs/methods.md#rpl), `(N,)`."""
    return msp(logits)
