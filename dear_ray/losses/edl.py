"""Evidential deep learning (Sensoy et al. 2018) as used by DEAR (docs/methods.md#edl).

Logits z (B, K) become evidence e >= 0, Dirichlet parameters alpha = e + 1, strength S = sum_k alpha_k,
expected probabilities p = alpha / S and vacuity u = K / S.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from dear_ray.losses._checks import check_scores_labels

EVIDENCE_FUNCTIONS = ("exp", "relu", "softplus")
EDL_LOSS_TYPES = ("log", "digamma", "mse")


def evidence(logits: torch.Tensor, kind: str = "exp") -> torch.Tensor:
    """Non-negative evidence from logits.

    Args:
        logits: (..., K) raw scores.
        kind: `exp` (exp(clamp(z, -10, 10)), DEAR's default), `relu` or `softplus`.

    Returns:
        Evidence of the same shape as `logits`.
    """
    if kind == "exp":
        return torch.exp(torch.clamp(logits, -10.0, 10.0))
    if kind == "relu":
        return F.relu(logits)
    if kind == "softplus":
        return F.softplus(logits)
    raise ValueError(f"evidence: unknown evidence function {kind!r}; expected one of {EVIDENCE_FUNCTIONS}")


def dirichlet_alpha(logits: torch.Tensor, kind: str = "exp") -> torch.Tensor:
    """alpha = evidence(z) + 1, the Dirichlet parameters (..., K)."""
    return evidence(logits, kind) + 1.0


def vacuity(alpha: torch.Tensor) -> torch.Tensor:
    """u = K / S for alpha (B, K); returns (B,), in (0, 1], higher = more uncertain."""
    return alpha.shape[-1] / alpha.sum(dim=-1)


def dirichlet_kl_to_uniform(alpha: torch.Tensor) -> torch.Tensor:
    """KL(Dir(alpha) || Dir(1, ..., 1)) in closed form.

    KL = ln Gamma(S) - sum_k ln Gamma(alpha_k) - ln Gamma(K) + sum_k (alpha_k - 1)(psi(alpha_k) - psi(S)).

    Args:
        alpha: (B, K) Dirichlet parameters, > 0.

    Returns:
        (B,) divergences in nats.
    """
    num_classes = alpha.shape[-1]
    strength = alpha.sum(dim=-1, keepdim=True)
    log_norm = (torch.lgamma(strength).squeeze(-1) - torch.lgamma(alpha).sum(dim=-1)
                - torch.lgamma(alpha.new_tensor(float(num_classes))))
    digamma_term = ((alpha - 1.0) * (torch.digamma(alpha) - torch.digamma(strength))).sum(dim=-1)
    return log_norm + digamma_term


def edl_loss(
    alpha: torch.Tensor,
    labels: torch.Tensor,
    *,
    loss_type: str = "log",
    kl_weight: float = 0.0,
) -> tuple[torch.Tensor, dict[str, float]]:
    """The evidential loss, averaged over the batch (docs/methods.md#edl).

    - `log` (DEAR's default): log S - log alpha_y;
    - `digamma`: psi(S) - psi(alpha_y);
    - `mse`: sum_k (Y_k - p_k)^2 + p_k (1 - p_k) / (S + 1);
    plus `kl_weight * KL(Dir(alpha~) || Dir(1))` with alpha~ = (alpha - 1)(1 - Y) + 1 (the
    misleading evidence only). Pass `kl_weight=lambda_t` to enable the annealed KL term; 0 turns it
    off (DEAR's "edlnokl").

    Args:
        alpha: (B, K) Dirichlet parameters.
        labels: (B,) class indices in [0, K).
        loss_type: `log`, `digamma` or `mse`.
        kl_weight: weight of the KL regulariser, >= 0.

    Returns:
        The scalar loss and stats `loss_edl` (data term), `loss_kl` (weighted KL, 0 when off),
        `uncertainty` (mean vacuity) and `evidence` (mean total evidence).
    """
    check_scores_labels("edl_loss", alpha, labels)
    if kl_weight < 0:
        raise ValueError(f"edl_loss: kl_weight must be >= 0, got {kl_weight}")
    one_hot = F.one_hot(labels, alpha.shape[1]).to(alpha.dtype)
    strength = alpha.sum(dim=1, keepdim=True)
    if loss_type == "log":
        data = (one_hot * (torch.log(strength) - torch.log(alpha))).sum(dim=1)
    elif loss_type == "digamma":
        data = (one_hot * (torch.digamma(strength) - torch.digamma(alpha))).sum(dim=1)
    elif loss_type == "mse":
        prob = alpha / strength
        data = ((one_hot - prob) ** 2 + prob * (1.0 - prob) / (strength + 1.0)).sum(dim=1)
    else:
        raise ValueError(f"edl_loss: unknown loss_type {loss_type!r}; expected one of {EDL_LOSS_TYPES}")
    loss_data = data.mean()
    loss = loss_data
    loss_kl = alpha.new_zeros(())
    if kl_weight > 0:
        alpha_tilde = (alpha - 1.0) * (1.0 - one_hot) + 1.0
        loss_kl = kl_weight * dirichlet_kl_to_uniform(alpha_tilde).mean()
        loss = loss + loss_kl
    stats = {
        "loss_edl": float(loss_data.detach()),
        "loss_kl": float(loss_kl.detach()),
        "uncertainty": float(vacuity(alpha.detach()).mean()),
        "evidence": float((alpha.detach() - 1.0).sum(dim=1).mean()),
    }
    return loss, stats
