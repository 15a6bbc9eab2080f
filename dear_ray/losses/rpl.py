"""Reciprocal point learning (Chen et al. 2020), the RPL baseline of DEAR (docs/methods.md#rpl).

Two metrics:
- `dot` (DEAR's variant, mmaction/models/heads/rpl_dist.py): logits_k = f . p_k (no bias);
  L = CE(logits / T, y) + weight * 0.5 * MSE(f, r), the MSE over every feature element against a
  learnable scalar r.
- `l2` (the canonical ARPL/RPL form): logits_k = ||f - p_k||^2 / D (a sample far from class k's
  reciprocal point belongs to k); L = CE(logits / T, y) + weight * MSE(||f - p_y||^2 / D, r).
The open-set score is 1 - MSP of softmax(logits) for both (see `dear_ray.scores`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from dear_ray.losses._checks import accuracy, check_scores_labels

RPL_METRICS = ("dot", "l2")


def rpl_logits(features: torch.Tensor, points: torch.Tensor, metric: str = "dot") -> torch.Tensor:
    """Logits from features (B, D) and reciprocal points (K, D); returns (B, K)."""
    if features.dim() != 2 or points.dim() != 2 or features.shape[1] != points.shape[1]:
        raise ValueError(f"rpl_logits: expected features (B, D) and points (K, D), got "
                         f"{tuple(features.shape)} and {tuple(points.shape)}")
    if metric == "dot":
        return features @ points.t()
    if metric == "l2":
        sq = (features.pow(2).sum(1, keepdim=True) - 2.0 * features @ points.t()
              + points.pow(2).sum(1).unsqueeze(0))
        return sq / features.shape[1]
    raise ValueError(f"rpl_logits: unknown metric {metric!r}; expected one of {RPL_METRICS}")


def rpl_loss(
    features: torch.Tensor,
    points: torch.Tensor,
    radius: torch.Tensor,
    labels: torch.Tensor,
    *,
    metric: str = "dot",
    temperature: float = 1.0,
    weight: float = 0.1,
) -> tuple[torch.Tensor, dict[str, float]]:
    """The RPL training loss (see the module docstring for the two metrics).

    Args:
        features: (B, D) pooled features (after the recognizer's dropout).
        points: (K, D) learnable reciprocal points.
        radius: scalar learnable r.
        labels: (B,) class indices.
        metric: `dot` or `l2`.
        temperature: T dividing the logits in the cross-entropy.
        weight: factor of the radius term (0.1 in DEAR and ARPL).

    Returns:
        The scalar loss and stats `loss_cls` (cross-entropy), `loss_open` (weighted radius term),
        `acc`.
    """
    logits = rpl_logits(features, points, metric)
    check_scores_labels("rpl_loss", logits, labels)
    if temperature <= 0:
        raise ValueError(f"rpl_loss: temperature must be > 0, got {temperature}")
    loss_cls = F.cross_entropy(logits / temperature, labels)
    if metric == "dot":
        loss_open = weight * 0.5 * F.mse_loss(features, radius.expand_as(features))
    else:
        dist_y = (features - points[labels]).pow(2).mean(dim=1)
        loss_open = weight * F.mse_loss(dist_y, radius.expand_as(dist_y))
    loss = loss_cls + loss_open
    stats = {"loss_cls": float(loss_cls.detach()), "loss_open": float(loss_open.detach()),
             "acc": accuracy(logits, labels)}
    return loss, stats
