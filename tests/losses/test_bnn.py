import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy import integrate, stats

from dear_ray.losses import bnn_kl, bnn_loss, gaussian_log_prob, scale_mixture_log_prob

SIGMA2 = math.exp(-6)
W = torch.tensor([[0.1, -0.3], [0.002, 1.5]], dtype=torch.float64)


def _mixture_logpdf(w):
    return np.log(0.5 * stats.norm.pdf(w, 0, 1) + 0.5 * stats.norm.pdf(w, 0, SIGMA2))


def test_log_probs_match_scipy():
    mu = torch.full_like(W, 0.05)
    sigma = torch.full_like(W, 0.2)
    assert float(gaussian_log_prob(W, mu, sigma)) == pytest.approx(
        stats.norm.logpdf(W.numpy(), 0.05, 0.2).sum(), rel=1e-12)
    assert float(scale_mixture_log_prob(W)) == pytest.approx(_mixture_logpdf(W.numpy()).sum(), rel=1e-10)
    # far from 0 the narrow component underflows in a direct sum; logsumexp stays finite
    assert math.isfinite(float(scale_mixture_log_prob(torch.tensor([40.0], dtype=torch.float64))))


def test_bnn_kl_single_sample_is_log_q_minus_log_p():
    mu, rho = torch.zeros_like(W), torch.full_like(W, -2.0)
    sigma = F.softplus(rho).numpy()
    expected = (stats.norm.logpdf(W.numpy(), 0, sigma) - _mixture_logpdf(W.numpy())).sum()
    assert float(bnn_kl([W], [mu], [rho])) == pytest.approx(expected, rel=1e-10)


def test_bnn_kl_monte_carlo_mean_matches_quadrature_kl():
    mu = torch.tensor([0.3, -0.05, 0.0], dtype=torch.float64)
    rho = torch.tensor([-2.0, -3.0, -4.5], dtype=torch.float64)
    sigma = F.softplus(rho)
    gen = torch.Generator().manual_seed(0)
    draws = torch.stack([
        bnn_kl([mu + sigma * torch.randn(3, generator=gen, dtype=torch.float64)], [mu], [rho])
        for _ in range(4000)])
    true_kl = 0.0
    for m, s in zip(mu.tolist(), sigma.tolist()):
        def integrand(w, m=m, s=s):
            return stats.norm.pdf(w, m, s) * (stats.norm.logpdf(w, m, s) - _mixture_logpdf(w))
        true_kl += integrate.quad(integrand, m - 12 * s, m + 12 * s, points=[0.0], limit=200)[0]
    stderr = float(draws.std()) / math.sqrt(len(draws))
    assert float(draws.mean()) == pytest.approx(true_kl, abs=4 * stderr)


def test_bnn_loss_adds_weighted_complexity():
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0]])
    labels = torch.tensor([0, 0])
    loss, st = bnn_loss(logits, labels, torch.tensor(5000.0), kl_weight=1e-6)
    ce = float(F.cross_entropy(logits, labels))
    assert float(loss) == pytest.approx(ce + 5e-3)
    assert st["loss_complexity"] == pytest.approx(5e-3) and st["acc"] == 0.5


def test_bnn_kl_rejects_mismatched_lists():
    with pytest.raises(ValueError, match="one mu and rho per sample"):
        bnn_kl([W, W], [W], [W])
