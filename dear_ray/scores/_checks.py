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


def as_features(x, name: str = "features", width: int | None = None) -> np.ndarray:
    """`(N, F)` float64 features with finite values; `width`: the F the fitted detector expects."""
    arr = as_logits(x, name)
    if width is not None and arr.shape[1] != width:
        raise ValueError(f"{name}: expected (N, {width}) features like the fitted ones, got {arr.shape}")
    return arr


def as_labels(labels, n: int) -> np.ndarray:
    """`(n,)` integer labels, or a ValueError."""
    y = np.asarray(labels)
    if y.shape != (n,) or not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"labels must be ({n},) integers, got {y.dtype} {y.shape}")
    return y


def need_features(name: str, features) -> None:
    """A ValueError naming detector `name` when no features were given."""
    if features is None:
        raise ValueError(f"{name} needs the pooled features (N, F); none were given (stores without features)")


def as_classifier(name: str, weight, bias) -> tuple[np.ndarray, np.ndarray]:
    """The final linear layer as float64 `weight` `(K, F)` and `bias` `(K,)`, or a ValueError."""
    w, b = np.asarray(weight, np.float64), np.asarray(bias, np.float64)
    if w.ndim != 2 or b.shape != (w.shape[0],):
        raise ValueError(f"{name}: weight must be (K, F) and bias (K,), got {w.shape} and {b.shape}")
    return w, b
