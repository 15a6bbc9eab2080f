"""The annealing coefficient of docs/methods.md#edl, computed by the training loop and passed in by
name."""

from __future__ import annotations


def annealing_coefficient(epoch: int, total_epochs: int, lambda0: float = 0.01) -> float:
    """lambda_t = lambda0 ** (1 - epoch / total_epochs) (docs/methods.md#edl, DEAR's `exp` annealing).

    Weights the EDL KL term and the two halves of the AvU loss. The value grows from `lambda0` at
    the first epoch to `lambda0 ** (1 / total_epochs)` at the last one; it never reaches 1.

    Args:
        epoch: 0-based epoch index, in `[0, total_epochs)`.
        total_epochs: number of training epochs, >= 1.
        lambda0: the starting value, in (0, 1].

    Raises:
        ValueError: `total_epochs < 1`, `epoch` outside `[0, total_epochs)` or `lambda0` outside (0, 1].
    """
    if total_epochs < 1:
        raise ValueError(f"annealing_coefficient: total_epochs must be >= 1, got {total_epochs}")
    if not 0 <= epoch < total_epochs:
        raise ValueError(f"annealing_coefficient: epoch must be 0-based in [0, {total_epochs}), "
                         f"got {epoch}")
    if not 0.0 < lambda0 <= 1.0:
        raise ValueError(f"annealing_coefficient: lambda0 must be in (0, 1], got {lambda0}")
    return float(lambda0 ** (1.0 - epoch / total_epochs))
