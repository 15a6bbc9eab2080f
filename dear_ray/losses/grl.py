"""Gradient reversal (Ganin & Lempitsky 2015), used by SDN's scene-adversarial head
(docs/methods.md#sdn)."""

from __future__ import annotations

import torch


class GradReverse(torch.autograd.Function):
    """Identity in the forward pass; multiplies the incoming gradient by -alpha in the backward pass."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, alpha: float) -> torch.Tensor:
        ctx.alpha = alpha
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor) -> tuple[torch.Tensor, None]:
        return -ctx.alpha * grad_output, None


def grad_reverse(x: torch.Tensor, alpha: float = 1.0) -> torch.Tensor:
    """Apply gradient reversal with strength `alpha` (>= 0) to `x` (any shape)."""
    if alpha < 0:
        raise ValueError(f"grad_reverse: alpha must be >= 0, got {alpha}")
    return GradReverse.apply(x, float(alpha))
