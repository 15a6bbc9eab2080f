"""The accuracy-versus-uncertainty calibration loss, DEAR's "EUC" (DEAR paper Sec. 3.2;
docs/methods.md#edl_avu)."""

from __future__ import annotations

import torch

from dear_ray.losses._checks import check_scores_labels
from dear_ray.losses.edl import vacuity


def avu_loss(
    alpha: torch.Tensor,
    labels: torch.Tensor,
    *,
    anneal: float,
    disentangle: bool = False,
    eps: float = 1e-10,
) -> tuple[torch.Tensor, dict[str, float]]:
    """AvU loss on Dirichlet parameters, averaged over the batch.

    With p_i = max_k alpha_ik / S_i, u_i = K / S_i and acc_i = 1[argmax = y_i] (no gradient):

        L = mean_i [ anneal * acc_i * (-p_i log(1 - u_i + eps))
                     + (1 - anneal) * (1 - acc_i) * (-(1 - p_i) log(u_i + eps)) ]

    `disentangle=True` uses -log(p_i (1 - u_i) + eps) for correct and -log((1 - p_i) u_i + eps) for
    wrong predictions instead (the annealing weights stay). No threshold is involved.

    Args:
        alpha: (B, K) Dirichlet parameters.
        labels: (B,) class indices.
        anneal: lambda_t of docs/methods.md#edl, in [0, 1].
        disentangle: use the disentangled variant.
        eps: inside the logarithms.

    Returns:
        The scalar loss and stats `loss_avu`, `avu_accurate_certain` (mean over correct samples of
        (1 - u)) and `avu_inaccurate_uncertain` (mean over wrong samples of u).
    """
    check_scores_labels("avu_loss", alpha, labels)
    if not 0.0 <= anneal <= 1.0:
        raise ValueError(f"avu_loss: anneal must be in [0, 1], got {anneal}")
    strength = alpha.sum(dim=1)
    prob, pred = (alpha / strength.unsqueeze(1)).max(dim=1)
    unc = vacuity(alpha)
    acc = (pred == labels).to(alpha.dtype).detach()
    if disentangle:
        accurate = -torch.log(prob * (1.0 - unc) + eps)
        inaccurate = -torch.log((1.0 - prob) * unc + eps)
    else:
        accurate = -prob * torch.log(1.0 - unc + eps)
        inaccurate = -(1.0 - prob) * torch.log(unc + eps)
    per_sample = anneal * acc * accurate + (1.0 - anneal) * (1.0 - acc) * inaccurate
    loss = per_sample.mean()
    unc_d = unc.detach()
    n_acc = float(acc.sum())
    n_wrong = float((1.0 - acc).sum())
    stats = {
        "loss_avu": float(loss.detach()),
        "avu_accurate_certain": float(((1.0 - unc_d) * acc).sum()) / n_acc if n_acc else 0.0,
        "avu_inaccurate_uncertain": float((unc_d * (1.0 - acc)).sum()) / n_wrong if n_wrong else 0.0,
    }
    return loss, stats
