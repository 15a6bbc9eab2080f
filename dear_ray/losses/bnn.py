"""Bayes-by-backprop (Blundell et al. 2015) for the BNN baseline's last layer (docs/methods.md#bnn).

Factorised Gaussian posterior q(w) = N(mu, sigma^2), sigma = softplus(rho); scale-mixture prior
p(w) = pi N(0, sigma1^2) + (1 - pi) N(0, sigma2^2), pi = 0.5, sigma1 = 1, sigma2 = e^-6. The
complexity cost is the Monte-Carlo estimate log q(w) - log p(w) at the sampled weights (the mixture
prior has no closed-form KL).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from dear_ray.losses._checks import accuracy, check_scores_labels

PRIOR_PI = 0.5
PRIOR_SIGMA1 = 1.0
PRIOR_SIGMA2 = math.exp(-6.0)
_LOG_SQRT_2PI = 0.5 * math.log(2.0 * math.pi)


def gaussian_log_prob(w: torch.Tensor, mu: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """sum_i log N(w_i; mu_i, sigma_i^2) over every element (scalar)."""
    return (-_LOG_SQRT_2PI - torch.log(sigma) - (w - mu) ** 2 / (2.0 * sigma**2)).sum()


def scale_mixture_log_prob(
    w: torch.Tensor,
    *,
    pi: float = PRIOR_PI,
    sigma1: float = PRIOR_SIGMA1,
    sigma2: float = PRIOR_SIGMA2,
) -> torch.Tensor:
    """sum_i log[pi N(w_i; 0, sigma1^2) + (1 - pi) N(w_i; 0, sigma2^2)] (scalar), via logsumexp.

    (DEAR adds the two densities directly, which underflows to log 0 for |w| >> sigma2.)
    """
    def log_normal(sigma: float) -> torch.Tensor:
        return -_LOG_SQRT_2PI - math.log(sigma) - w**2 / (2.0 * sigma**2)

    stacked = torch.stack([math.log(pi) + log_normal(sigma1), math.log1p(-pi) + log_normal(sigma2)])
    return torch.logsumexp(stacked, dim=0).sum()


def bnn_kl(
    samples: Sequence[torch.Tensor],
    mus: Sequence[torch.Tensor],
    rhos: Sequence[torch.Tensor],
    *,
    pi: float = PRIOR_PI,
    sigma1: float = PRIOR_SIGMA1,
    sigma2: float = PRIOR_SIGMA2,
) -> torch.Tensor:
    """One-sample estimate of KL(q || p): log q(w) - log p(w), summed over all parameter tensors.

    Args:
        samples: sampled weights w, one tensor per parameter (e.g. weight and bias).
        mus: posterior means, same shapes.
        rhos: posterior rho (sigma = softplus(rho)), same shapes.
        pi, sigma1, sigma2: the scale-mixture prior.

    Returns:
        Scalar tensor, differentiable w.r.t. samples, mus and rhos.
    """
    if not len(samples) == len(mus) == len(rhos):
        raise ValueError(f"bnn_kl: need one mu and rho per sample, got {len(samples)} samples, "
                         f"{len(mus)} mus, {len(rhos)} rhos")
    total = samples[0].new_zeros(())
    for w, mu, rho in zip(samples, mus, rhos, strict=True):
        total = total + gaussian_log_prob(w, mu, F.softplus(rho))
        total = total - scale_mixture_log_prob(w, pi=pi, sigma1=sigma1, sigma2=sigma2)
    return total


def bnn_loss(
    logits: torch.Tensor,
    labels: torch.Tensor,
    kl: torch.Tensor,
    *,
    kl_weight: float = 1e-6,
) -> tuple[torch.Tensor, dict[str, float]]:
    """L = CE(logits, y) + kl_weight * kl.

    Args:
        logits: (B, K) mean logits over the training weight samples (2 in DEAR).
        labels: (B,) class indices.
        kl: scalar complexity cost, the mean of `bnn_kl` over the same samples.
        kl_weight: its factor (1e-6 in DEAR).

    Returns:
        The scalar loss and stats `loss_cls`, `loss_complexity` (weighted), `acc`.
    """
    check_scores_labels("bnn_loss", logits, labels)
    loss_cls = F.cross_entropy(logits, labels)
    loss_complexity = kl_weight * kl
    stats = {"loss_cls": float(loss_cls.detach()), "loss_complexity": float(loss_complexity.detach()),
             "acc": accuracy(logits, labels)}
    return loss_cls + loss_complexity, stats
