import itertools
import math

import numpy as np
import pytest
import torch
from scipy.spatial.distance import cdist

from dear_ray.losses import hsic_biased, hsic_unbiased, hsic_unbiased_from_kernels, rbf_kernel

GEN = torch.Generator().manual_seed(0)
X = torch.randn(7, 3, generator=GEN, dtype=torch.float64)
Y = X[:, :2] ** 2 + 0.3 * torch.randn(7, 2, generator=GEN, dtype=torch.float64)


def _kernel(a):
    a = a.numpy()
    return np.exp(-cdist(a, a, "sqeuclidean") / (2 * a.shape[1]))


def test_rbf_kernel_uses_sigma_sqrt_dim():
    np.testing.assert_allclose(rbf_kernel(X), _kernel(X), rtol=1e-12)
    np.testing.assert_allclose(rbf_kernel(X, sigma=0.5),
                               np.exp(-cdist(X, X, "sqeuclidean") / 0.5), rtol=1e-12)


def test_hsic_biased_matches_direct_sum():
    k, lk = _kernel(X), _kernel(Y)
    n = len(k)
    h = np.eye(n) - np.ones((n, n)) / n
    direct = sum(k[i, j] * h[j, q] * lk[q, r] * h[r, i]
                 for i, j, q, r in itertools.product(range(n), repeat=4)) / (n - 1) ** 2
    assert float(hsic_biased(X, Y)) == pytest.approx(direct, rel=1e-10)


def test_hsic_unbiased_matches_u_statistic():
    # Song et al. 2012: the estimator equals the U-statistic over distinct 4-tuples
    # (1 / (n)_4) sum k_ij (l_ij + l_qr - 2 l_iq), whose kernels never use a diagonal entry.
    k, lk = _kernel(X), _kernel(Y)
    n = len(k)
    total = sum(k[i, j] * (lk[i, j] + lk[q, r] - 2 * lk[i, q])
                for i, j, q, r in itertools.permutations(range(n), 4))
    u_stat = total / (n * (n - 1) * (n - 2) * (n - 3))
    assert float(hsic_unbiased(X, Y)) == pytest.approx(u_stat, rel=1e-10)


def _song(kt, lt):
    n = len(kt)
    return (np.trace(kt @ lt) + kt.sum() * lt.sum() / ((n - 1) * (n - 2))
            - 2 * kt.sum(0) @ lt.sum(0) / (n - 2)) / (n * (n - 3))


def test_hsic_unbiased_zeroes_the_diagonal_not_a_broadcast_row():
    """Regression for DEAR issue #4: `K - diag(K)` broadcasts the diagonal over rows.

    With a linear kernel (non-constant diagonal) the bug form gives a different value; ours is the
    K - diag(diag(K)) form.
    """
    x, y = X.numpy(), Y.numpy()
    k, lk = x @ x.T, y @ y.T
    fixed = _song(k - np.diag(np.diag(k)), lk - np.diag(np.diag(lk)))
    bug = _song(k - np.diag(k), lk - np.diag(lk))
    ours = float(hsic_unbiased_from_kernels(torch.from_numpy(k), torch.from_numpy(lk)))
    assert ours == pytest.approx(fixed, rel=1e-10)
    assert abs(bug - fixed) > 0.01 * abs(fixed)
    assert ours != pytest.approx(bug, rel=1e-3)


def test_issue_4_bug_is_harmless_for_the_rbf_kernel():
    """RBF kernels have a unit diagonal: the bug only shifts every off-diagonal entry by -1, and
    the U-statistic is invariant to that shift. (A finding: DEAR issue #4 did not change DEAR's
    numbers.)"""
    k, lk = _kernel(X), _kernel(Y)
    bug = _song(k - np.diag(k), lk - np.diag(lk))
    assert float(hsic_unbiased(X, Y)) == pytest.approx(bug, rel=1e-9)
    with pytest.raises(ValueError, match="two \\(N, N\\) kernels with N >= 4"):
        hsic_unbiased_from_kernels(torch.eye(3), torch.eye(3))


def test_hsic_detects_dependence_and_is_zero_below_four_samples():
    gen = torch.Generator().manual_seed(1)
    a = torch.randn(64, 2, generator=gen, dtype=torch.float64)
    dependent = hsic_unbiased(a, a * 2 + 0.01)
    independent = hsic_unbiased(a, torch.randn(64, 2, generator=gen, dtype=torch.float64))
    assert float(dependent) > 10 * abs(float(independent))
    assert float(hsic_biased(X[:3], Y[:3])) == 0.0
    assert float(hsic_unbiased(X[:3], Y[:3])) == 0.0


def test_hsic_is_differentiable_and_checks_sample_counts():
    x = X.clone().requires_grad_(True)
    hsic_biased(x, Y).backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    assert torch.autograd.gradcheck(lambda a: hsic_unbiased(a, Y), (X.clone().requires_grad_(True),))
    with pytest.raises(ValueError, match="same number of samples, got 7 and 6"):
        hsic_biased(X, Y[:6])
    assert math.isfinite(float(hsic_unbiased(X, X)))
