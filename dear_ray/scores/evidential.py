"""Scores of evidential heads (docs/methods.md#edl: `edl`, `edl_avu`, `dear`, `dear_alt`).

The logits are the view-averaged logits `(N, K)` (docs/methods.md#edl: average the logits over
views first,
then apply the evidence function). alpha = evidence + 1, S = sum_k alpha_k.

Scores (higher = more unknown, shape `(N,)`): `vacuity` K / S, `evidential_msp` 1 - max alpha / S,
`mpu` minus the margin-aware predictive uncertainty MPU (a certainty in its paper), and the
Dirichlet's `differential_entropy` and `mutual_information` (docs/scores.md).
"""

from __future__ import annotations

import numpy as np
from scipy.special import digamma, gammaln

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



def mpu(logits, kind: str = "exp") -> np.ndarray:
    """Negative margin-aware predictive uncertainty, `-MPU`, shape `(N,)`: higher = more unknown.

    "Stop Guessing: Choosing the Optimization-Consistent Uncertainty Measurement for Evidential
    Deep Learning" (ICLR 2026), Proposition 3: `MPU(alpha) = (K - 1) alpha_yhat - sum_{j != yhat}
    alpha_j` with `yhat = argmax_k alpha_k`, i.e. `K max_k alpha_k - S`. The paper's MPU is a
    CERTAINTY (0 for a flat Dirichlet, growing with the margin of the predicted class over the
    others), so the score returned here is its negative, in `(-inf, 0]`.
    """
    alpha = dirichlet_alpha(logits, kind)
    return alpha.sum(axis=-1) - alpha.shape[-1] * alpha.max(axis=-1)


def differential_entropy(logits, kind: str = "exp") -> np.ndarray:
    """Differential entropy of Dir(alpha), shape `(N,)` (nats): higher = more unknown.

    `H = log B(alpha) + (S - K) psi(S) - sum_k (alpha_k - 1) psi(alpha_k)`, with `log B(alpha) =
    sum_k log Gamma(alpha_k) - log Gamma(S)` (Malinin & Gales, "Predictive Uncertainty
    Estimation via Prior Networks", NeurIPS 2018, Sec. 4: the distributional-uncertainty measure).
    Largest, `-log (K - 1)!`, for the flat Dir(1); it falls without bound as the evidence grows.
    """
    alpha = dirichlet_alpha(logits, kind)
    s = alpha.sum(axis=-1)
    k = alpha.shape[-1]
    log_beta = gammaln(alpha).sum(axis=-1) - gammaln(s)
    return log_beta + (s - k) * digamma(s) - ((alpha - 1.0) * digamma(alpha)).sum(axis=-1)


def mutual_information(logits, kind: str = "exp") -> np.ndarray:
    """Mutual information between the label and the categorical `p ~ Dir(alpha)`, shape `(N,)`.

    The expected information gain `I[y; p] = H[E p] - E_p H[y | p]` in closed form (Malinin &
    Gales, NeurIPS 2018, Sec. 4): `-sum_k p_k (log p_k - psi(alpha_k + 1) + psi(S + 1))`, `p_k =
    alpha_k / S`. Higher = more unknown; 0 only in the limit of infinite evidence.
    """
    alpha = dirichlet_alpha(logits, kind)
    s = alpha.sum(axis=-1, keepdims=True)
    p = alpha / s
    return -np.sum(p * (np.log(p) - digamma(alpha + 1.0) + digamma(s + 1.0)), axis=-1)
