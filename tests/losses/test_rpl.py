import numpy as np
import pytest
import torch
from scipy.special import logsumexp

from dear_ray.losses import rpl_logits, rpl_loss

F_ = torch.tensor([[1.0, 0.0, 2.0], [-1.0, 0.5, 0.0], [0.3, 0.3, -0.6]], dtype=torch.float64)
P = torch.tensor([[0.5, -1.0, 0.0], [0.0, 2.0, 1.0]], dtype=torch.float64)
Y = torch.tensor([0, 1, 1])
R = torch.tensor(0.7, dtype=torch.float64)


def _ce(logits, labels):
    return float(np.mean([logsumexp(row) - row[y] for row, y in zip(logits, labels)]))


def test_logits_dot_and_l2():
    f, p = F_.numpy(), P.numpy()
    np.testing.assert_allclose(rpl_logits(F_, P, "dot"), f @ p.T)
    l2 = np.array([[((fi - pk) ** 2).sum() / 3 for pk in p] for fi in f])
    np.testing.assert_allclose(rpl_logits(F_, P, "l2"), l2, rtol=1e-12)
    with pytest.raises(ValueError, match="unknown metric 'cos'"):
        rpl_logits(F_, P, "cos")
    with pytest.raises(ValueError, match=r"got \(3, 3\) and \(2, 2\)"):
        rpl_logits(F_, P[:, :2])


def test_dot_loss_is_deal_variant():
    loss, stats = rpl_loss(F_, P, R, Y, metric="dot", temperature=2.0)
    logits = F_.numpy() @ P.numpy().T
    expected = _ce(logits / 2.0, Y.numpy()) + 0.1 * 0.5 * float(((F_.numpy() - 0.7) ** 2).mean())
    assert float(loss) == pytest.approx(expected, rel=1e-12)
    assert stats["loss_cls"] == pytest.approx(_ce(logits / 2.0, Y.numpy()))
    assert stats["acc"] == pytest.approx(float(np.mean(logits.argmax(1) == Y.numpy())))


def test_l2_loss_is_arpl_form():
    loss, _ = rpl_loss(F_, P, R, Y, metric="l2")
    f, p = F_.numpy(), P.numpy()
    logits = np.array([[((fi - pk) ** 2).sum() / 3 for pk in p] for fi in f])
    dist_y = np.array([((fi - p[y]) ** 2).mean() for fi, y in zip(f, Y.numpy())])
    expected = _ce(logits, Y.numpy()) + 0.1 * float(((dist_y - 0.7) ** 2).mean())
    assert float(loss) == pytest.approx(expected, rel=1e-12)


def test_radius_is_learned():
    r = R.clone().requires_grad_(True)
    rpl_loss(F_, P, r, Y, metric="dot")[0].backward()
    # d/dr 0.05 * mean((f - r)^2) = -0.1 * mean(f - r)
    assert float(r.grad) == pytest.approx(-0.1 * float((F_ - 0.7).mean()))
