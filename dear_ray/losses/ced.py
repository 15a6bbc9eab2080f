"""The contrastive evidential debias (CED) losses of DEAR (docs/methods.md#dear, #dear_alt).

Branch 1 (f1) is the "unbiased" model; branches 2 and 3 are the biased ones (shuffled-time input,
per-frame 2D network). Both modes include the three branches' EDL losses (`log` form).
"""

from __future__ import annotations

import torch

from dear_ray.losses.edl import edl_loss
from dear_ray.losses.hsic import hsic_biased, hsic_unbiased

CED_WEIGHT = 0.1
ALTERNATING_HSIC_WEIGHT = 0.5


def _edl_terms(alphas, labels):
    total = 0.0
    for alpha in alphas:
        loss, _ = edl_loss(alpha, labels, loss_type="log")
        total = total + loss
    return total


def ced_joint_loss(
    alphas: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
    labels: torch.Tensor,
    *,
    weight: float = CED_WEIGHT,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Joint mode (`dear`, every shipped DEAR config), no stop-gradient:

        L = weight * [ L_edl(a1) + L_edl(a2) + L_edl(a3) - HSIC_b(a1, a2) - HSIC_b(a1, a3) ]

    Args:
        alphas: the three branches' Dirichlet parameters, each (B, K).
        labels: (B,) class indices.
        weight: the overall factor (0.1 in DEAR).

    Returns:
        The scalar loss and stats `loss_ced`, `ced_edl` (sum of the three EDL terms, unweighted),
        `hsic_12`, `hsic_13` (unweighted HSIC_b values).
    """
    a1, a2, a3 = alphas
    edl = _edl_terms(alphas, labels)
    h12 = hsic_biased(a1, a2)
    h13 = hsic_biased(a1, a3)
    loss = weight * (edl - h12 - h13)
    stats = {"loss_ced": float(loss.detach()), "ced_edl": float(edl.detach()),
             "hsic_12": float(h12.detach()), "hsic_13": float(h13.detach())}
    return loss, stats


def ced_alternating_loss(
    alphas: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
    features: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
    labels: torch.Tensor,
    *,
    iteration: int,
    weight: float = CED_WEIGHT,
    hsic_weight: float = ALTERNATING_HSIC_WEIGHT,
    hsic_normalised: bool = True,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Alternating min-max mode (`dear_alt`) on the pooled branch features z_i (B, width).

    Odd `iteration`: + hsic_weight [HSIC_u(z1, sg z2) + HSIC_u(z1, sg z3)] (minimise w.r.t. f1);
    even `iteration`: - hsic_weight [HSIC_u(sg z1, z2) + HSIC_u(sg z1, z3)] (maximise w.r.t. f2, f3);
    sg = stop-gradient. Plus the three EDL terms; everything times `weight`. HSIC_u is normalised by
    N(N-3) as Song et al. 2012 define it (`hsic_normalised=True`); the released DEAR code leaves
    that factor out
    in this mode (`DebiasHead.hsic_loss`: `hsic if self.alternative else hsic / (N * (N - 3))`):
    `hsic_normalised=False` reproduces it (the HSIC terms N(N-3) times larger).

    Args:
        alphas: the three branches' Dirichlet parameters, each (B, K).
        features: the three branches' pooled features before dropout, each (B, width).
        labels: (B,) class indices.
        iteration: the global training iteration; its parity picks the phase.
        weight: the overall factor (0.1).
        hsic_weight: the HSIC factor (0.5).
        hsic_normalised: divide HSIC_u by N(N-3) (True) or not (False, released DEAR).

    Returns:
        The scalar loss and stats `loss_ced`, `ced_edl`, `hsic_12`, `hsic_13` (HSIC_u values) and
        `hsic_phase` (1.0 = minimise, -1.0 = maximise).
    """
    z1, z2, z3 = features
    edl = _edl_terms(alphas, labels)
    n = z1.shape[0]
    scale = 1.0 if hsic_normalised or n < 4 else float(n * (n - 3))
    if iteration % 2 == 1:
        h12, h13 = hsic_unbiased(z1, z2.detach()), hsic_unbiased(z1, z3.detach())
        sign = 1.0
    else:
        h12, h13 = hsic_unbiased(z1.detach(), z2), hsic_unbiased(z1.detach(), z3)
        sign = -1.0
    h12, h13 = h12 * scale, h13 * scale
    loss = weight * (edl + sign * hsic_weight * (h12 + h13))
    stats = {"loss_ced": float(loss.detach()), "ced_edl": float(edl.detach()),
             "hsic_12": float(h12.detach()), "hsic_13": float(h13.detach()), "hsic_phase": sign}
    return loss, stats
