"""Shape checks shared by the loss functions: bad input fails with the function and shapes named."""

from __future__ import annotations

import torch


def check_scores_labels(fn: str, scores: torch.Tensor, labels: torch.Tensor) -> None:
    """Require `scores` (B, K) and integer `labels` (B,)."""
    if scores.dim() != 2:
        raise ValueError(f"{fn}: expected scores of shape (B, K), got {tuple(scores.shape)}")
    if labels.dim() != 1 or labels.shape[0] != scores.shape[0]:
        raise ValueError(f"{fn}: expected labels of shape ({scores.shape[0]},), "
                         f"got {tuple(labels.shape)}")
    if labels.dtype.is_floating_point or labels.dtype == torch.bool:
        raise ValueError(f"{fn}: labels must be integer class indices, got dtype {labels.dtype}")


def accuracy(scores: torch.Tensor, labels: torch.Tensor) -> float:
    """Top-1 accuracy of (B, K) scores as a python float."""
    return float((scores.detach().argmax(dim=1) == labels).float().mean())
