"""Scores of evidential heads (SPEC 1.1: `edl`, `edl_avu`, `dear`, `dear_alt`).

The logits are the view-averaged logits `(N, K)` (SPEC 1.1: average the logits over views first,
then apply the evidence function). alpha = evidence + 1, S = sum_k alpha_k.
"""

from __future__ import annotations

import numpy as np

from dear_ray.scores._checks import as_logits

EVIDENCE_FUNCTIONS = ("exp", "relu", "softplus")


def evidence(logits, kind: str = "exp") -> np.ndarray:
    """Non-negative evidence `(N, K)` from logits `(N, K)`.

    Args:
        logits: view-averaged logits `(N, K)`.
        kind: `exp` (exp(clamp(z, -10, 10)), DEAR's default), `relu` or `softplus`.
    """
    z = as_logits(logits)
    if kind == "exp":
        return np.exp(np.clip(z, -10.0, 10.0))
    if kind == "relu":
        return np.maximum(z, 0.0)
    if kind == "softplus":
        return np.logaddexp(0.0, z)
    raise ValueError(f"evidence: unknown kind {kind!r}; expected one of {', '.join(EVIDENCE_FUNCTIONS)}")


def dirichlet_alpha(logits, kind: str = "exp") -> np.ndarray:
    """Dirichlet concentration `alpha = evidence + 1`, shape `(N, K)`."""
    return evidence(logits, kind) + 1.0


def vacuity(logits, kind: str = "exp") -> np.ndarray:
    """Vacuity `u = K / S`, shape `(N,)`, in (0, 1]; 1 means no evidence at all."""
    alpha = dirichlet_alpha(logits, kind)
    return alpha.shape[-1] / alpha.sum(axis=-1)


def expected_probability(logits, kind: str = "exp") -> np.ndarray:
    """Expected class probability under the Dirichlet, `p = alpha / S`, shape `(N, K)`."""
    alpha = dirichlet_alpha(logits, kind)
    return alpha / alpha.sum(axis=-1, keepdims=True)


def evidential_msp(logits, kind: str = "exp") -> np.ndarray:
    """`1 - max_k alpha_k / S`, shape `(N,)`: the MSP score of an evidential head."""
    return 1.0 - expected_probability(logits, kind).max(axis=-1)

