import math

import numpy as np
import pytest
import torch
from scipy.special import digamma, gammaln
from torch.distributions import Dirichlet, kl_divergence

from dear_ray.losses import dirichlet_alpha, dirichlet_kl_to_uniform, edl_loss, evidence, vacuity

LOGITS = torch.tensor([[2.0, -1.0, 0.5, 12.0], [0.0, 3.0, -11.0, 1.0], [-0.5, 0.2, 0.1, 0.0]],
                      dtype=torch.float64)
LABELS = torch.tensor([3, 0, 2])


def test_evidence_functions():
    z = torch.tensor([-20.0, -1.0, 0.0, 2.0, 20.0], dtype=torch.float64)
    np.testing.assert_allclose(evidence(z, "exp"), np.exp(np.clip(z.numpy(), -10, 10)))
    np.testing.assert_allclose(evidence(z, "relu"), [0, 0, 0, 2, 20])
    np.testing.assert_allclose(evidence(z, "softplus"), np.log1p(np.exp(z.numpy())))
    with pytest.raises(ValueError, match="unknown evidence function 'tanh'"):
        evidence(z, "tanh")


def test_alpha_and_vacuity():
    alpha = dirichlet_alpha(LOGITS)
    assert alpha[0, 3] == pytest.approx(math.exp(10) + 1)  # clamped at 10
    np.testing.assert_allclose(vacuity(alpha), 4 / alpha.sum(1))


def _hand_loss(loss_type):
    alpha = np.exp(np.clip(LOGITS.numpy(), -10, 10)) + 1
    out = []
    for a, y in zip(alpha, LABELS.numpy()):
        s = a.sum()
        if loss_type == "log":
            out.append(math.log(s) - math.log(a[y]))
        elif loss_type == "digamma":
            out.append(digamma(s) - digamma(a[y]))
        else:
            p = a / s
            one_hot = np.eye(4)[y]
            out.append(sum((one_hot[k] - p[k]) ** 2 + p[k] * (1 - p[k]) / (s + 1) for k in range(4)))
    return float(np.mean(out))


@pytest.mark.parametrize("loss_type", ["log", "digamma", "mse"])
def test_edl_loss_forms_match_hand_computation(loss_type):
    loss, stats = edl_loss(dirichlet_alpha(LOGITS), LABELS, loss_type=loss_type)
    assert float(loss) == pytest.approx(_hand_loss(loss_type), rel=1e-10)
    assert stats["loss_edl"] == pytest.approx(_hand_loss(loss_type), rel=1e-10)
    assert stats["loss_kl"] == 0.0


def test_kl_closed_form_matches_torch_distributions():
    alpha = torch.tensor([[1.0, 1.0, 1.0], [2.5, 0.7, 9.0], [30.0, 1.2, 1.0]], dtype=torch.float64)
    expected = kl_divergence(Dirichlet(alpha), Dirichlet(torch.ones_like(alpha)))
    np.testing.assert_allclose(dirichlet_kl_to_uniform(alpha), expected, rtol=1e-10)
    assert float(dirichlet_kl_to_uniform(alpha)[0]) == pytest.approx(0.0, abs=1e-12)


def test_kl_term_uses_misleading_evidence_only():
    alpha = dirichlet_alpha(LOGITS)
    loss, stats = edl_loss(alpha, LABELS, loss_type="log", kl_weight=0.3)
    kls = []
    for a, y in zip(alpha.numpy(), LABELS.numpy()):
        at = a.copy()
        at[y] = 1.0  # alpha~ = (alpha - 1)(1 - Y) + 1
        s = at.sum()
        kl = (gammaln(s) - gammaln(at).sum() - gammaln(len(at))
              + ((at - 1) * (digamma(at) - digamma(s))).sum())
        kls.append(kl)
    assert stats["loss_kl"] == pytest.approx(0.3 * np.mean(kls), rel=1e-9)
    assert float(loss) == pytest.approx(_hand_loss("log") + 0.3 * np.mean(kls), rel=1e-9)


def test_edl_loss_gradient_raises_true_class_evidence():
    logits = LOGITS.clone().requires_grad_(True)
    loss, _ = edl_loss(dirichlet_alpha(logits), LABELS)
    loss.backward()
    for i, y in enumerate(LABELS.tolist()):
        if abs(float(LOGITS[i, y])) < 10:  # inside the clamp the true logit must go up
            assert logits.grad[i, y] < 0


def test_edl_loss_rejects_bad_input():
    alpha = dirichlet_alpha(LOGITS)
    with pytest.raises(ValueError, match="unknown loss_type 'ce'"):
        edl_loss(alpha, LABELS, loss_type="ce")
    with pytest.raises(ValueError, match=r"expected labels of shape \(3,\)"):
        edl_loss(alpha, LABELS[:2])
    with pytest.raises(ValueError, match="integer class indices"):
        edl_loss(alpha, LABELS.float())
    with pytest.raises(ValueError, match="kl_weight must be >= 0"):
        edl_loss(alpha, LABELS, kl_weight=-1.0)
