"""Hilbert-Schmidt independence criterion with RBF kernels (docs/methods.md#dear, #dear_alt).

Both estimators return a scalar tensor (an estimate, not a loss; the CED losses in
`dear_ray.losses.ced` decide the sign). They return 0 when N < 4, where the unbiased estimator is
undefined, for both forms (as DEAR does).
"""

from __future__ import annotations

import math

import torch


def rbf_kernel(x: torch.Tensor, sigma: float | None = None) -> torch.Tensor:
    """K_ij = exp(-||x_i - x_j||^2 / (2 sigma^2)).

    Args:
        x: (N, D) samples (further dimensions are flattened into D).
        sigma: bandwidth; default sqrt(D), DEAR's choice.

    Returns:
        (N, N) kernel matrix.
    """
    x = x.reshape(x.shape[0], -1)
    if x.dtype in (torch.float16, torch.bfloat16):
        x = x.float()  # distances of nearby points cancel badly in half precision
    if sigma is None:
        sigma = math.sqrt(x.shape[1])
    with torch.autocast(device_type=x.device.type, enabled=False):
        # squared distances from the Gram matrix: differentiable everywhere (cdist is not at 0)
        gram = x @ x.t()
        sq = torch.diagonal(gram)
        dist2 = (sq.unsqueeze(1) + sq.unsqueeze(0) - 2.0 * gram).clamp_min(0.0)
        return torch.exp(-dist2 / (2.0 * sigma**2))


def _check_pair(fn: str, x: torch.Tensor, y: torch.Tensor) -> None:
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"{fn}: x and y need the same number of samples, got {x.shape[0]} and "
                         f"{y.shape[0]}")


def hsic_biased(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Biased HSIC (Gretton et al. 2005): tr(K H L H) / (N - 1)^2, H = I - 1 1^T / N.

    Args:
        x: (N, Dx) samples; y: (N, Dy) samples, paired with x row by row.

    Returns:
        Scalar tensor; 0 when N < 4.
    """
    _check_pair("hsic_biased", x, y)
    n = x.shape[0]
    if n < 4:
        return x.new_zeros(())
    k = rbf_kernel(x)
    lk = rbf_kernel(y)
    # K H and L H: subtract column means; tr(KH LH) = tr(K H L H) since H is idempotent
    kh = k - k.mean(dim=0, keepdim=True)
    lh = lk - lk.mean(dim=0, keepdim=True)
    return torch.trace(kh @ lh) / (n - 1) ** 2


def hsic_unbiased(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Unbiased HSIC (Song et al. 2012) of two samples with RBF kernels; see
    `hsic_unbiased_from_kernels`.

    Args:
        x: (N, Dx) samples; y: (N, Dy) samples, paired with x row by row.

    Returns:
        Scalar tensor; 0 when N < 4.
    """
    _check_pair("hsic_unbiased", x, y)
    if x.shape[0] < 4:
        return x.new_zeros(())
    return hsic_unbiased_from_kernels(rbf_kernel(x), rbf_kernel(y))


def hsic_unbiased_from_kernels(k: torch.Tensor, lk: torch.Tensor) -> torch.Tensor:
    """Song et al.'s unbiased estimator from two (N, N) kernel matrices, N >= 4:

        [tr(Kt Lt) + (1^T Kt 1)(1^T Lt 1) / ((N-1)(N-2)) - 2 (Kt 1)^T (Lt 1) / (N-2)] / (N (N-3))

    with Kt = K - diag(diag(K)) and Lt likewise. DEAR's GitHub issue #4 (Cogito2012/DEAR) wrote `K
    - diag(K)`, which subtracts
    the diagonal broadcast over every row. For kernels with a constant unit diagonal (the RBF
    kernel) that only shifts the off-diagonal entries by -1, to which the estimator is invariant, so
    the bug changes nothing there; it does for other kernels (see the tests).
    """
    n = k.shape[0]
    if k.shape != (n, n) or lk.shape != (n, n) or n < 4:
        raise ValueError(f"hsic_unbiased_from_kernels: expected two (N, N) kernels with N >= 4, got "
                         f"{tuple(k.shape)} and {tuple(lk.shape)}")
    kt = k - torch.diag(torch.diagonal(k))
    lt = lk - torch.diag(torch.diagonal(lk))
    k1 = kt.sum(dim=1)
    l1 = lt.sum(dim=1)
    value = (
        (kt * lt.t()).sum()  # tr(Kt Lt)
        + k1.sum() * l1.sum() / ((n - 1) * (n - 2))
        - 2.0 * (k1 @ l1) / (n - 2)
    )
    return value / (n * (n - 3))
