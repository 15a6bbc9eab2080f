"""Input checks shared by the score functions (private)."""

from __future__ import annotations

import numpy as np


def as_logits(logits, name: str = "logits", *, ndim: int = 2) -> np.ndarray:
    """`logits` as a float64 array of `ndim` dimensions with finite values, or a ValueError."""
    arr = np.asarray(logits, dtype=np.float64)
    if arr.ndim != ndim:
        shape = "(N, K)" if ndim == 2 else "(S, N, K)"
        raise ValueError(f"{name}: expected a {ndim}-D array {shape}, got shape {arr.shape}")
    if arr.shape[-1] < 1:
        raise ValueError(f"{name}: needs at least one class column, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        bad = int(np.sum(~np.isfinite(arr)))
        raise ValueError(f"{name}: {bad} non-finite value(s) (NaN or inf)")
    return arr
