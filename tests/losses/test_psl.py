"""PSL's loss (Jun-CEN/PSL `nce_prototype_thre_double_4`) against a hand computation."""

import math

import pytest
import torch

from dear_ray.losses import psl_logits, psl_loss

# D = 2 so every cosine is exact: prototypes normalise to (1, 0) and (0, 1)
PROTOTYPES = torch.tensor([[2.0, 0.0], [0.0, 3.0]])
Z = torch.tensor([[0.6, 0.8], [0.8, 0.6], [0.0, 1.0]])
LABELS = torch.tensor([0, 0, 1])
SHUFFLED = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]])
TAU, THETA, THETA_SHUFFLED = 0.5, 0.7, 0.5


def _hand(with_shuffled):
    """Each anchor written out: a = (1 - |cos(z, p_y) - theta|) / tau is the positive; the
    denominator holds it, the other prototype cos / tau, the other clips (same class:
    |cos - theta| / tau, other class: cos / tau) and |cos(z, z') - theta'| / tau."""
    # anchor 0 (class 0): cos p0 0.6, p1 0.8; z1 (same class) 0.96; z2 0.8; shuffled 0.6
    a0 = (1 - abs(0.6 - THETA)) / TAU
    d0 = [a0, 0.8 / TAU, abs(0.96 - THETA) / TAU, 0.8 / TAU]
    d0 += [abs(0.6 - THETA_SHUFFLED) / TAU] * with_shuffled
    # anchor 1 (class 0): cos p0 0.8, p1 0.6; z0 (same class) 0.96; z2 0.6; shuffled 0.6
    a1 = (1 - abs(0.8 - THETA)) / TAU
    d1 = [a1, 0.6 / TAU, abs(0.96 - THETA) / TAU, 0.6 / TAU]
    d1 += [abs(0.6 - THETA_SHUFFLED) / TAU] * with_shuffled
    # anchor 2 (class 1): cos p0 0, p1 1; z0 0.8, z1 0.6 (other class); shuffled 0.8
    a2 = (1 - abs(1.0 - THETA)) / TAU
    d2 = [a2, 0.0, 0.8 / TAU, 0.6 / TAU]
    d2 += [abs(0.8 - THETA_SHUFFLED) / TAU] * with_shuffled
    per = [math.log(sum(math.exp(v) for v in d)) - a for a, d in ((a0, d0), (a1, d1), (a2, d2))]
    return sum(per) / 3


def test_psl_logits_are_cosine_over_temperature():
    expected = torch.tensor([[0.6, 0.8], [0.8, 0.6], [0.0, 1.0]]) / TAU
    assert torch.allclose(psl_logits(Z, PROTOTYPES, TAU), expected)


@pytest.mark.parametrize("with_shuffled", [True, False])
def test_psl_loss_matches_hand_computation(with_shuffled):
    loss, stats = psl_loss(Z, PROTOTYPES, LABELS, shuffled=SHUFFLED if with_shuffled else None,
                           temperature=TAU, theta=THETA, theta_shuffled=THETA_SHUFFLED)
    assert loss.item() == pytest.approx(_hand(with_shuffled), rel=1e-6)
    assert stats["loss_psl"] == pytest.approx(loss.item())
    assert stats["acc"] == pytest.approx(2 / 3)  # anchor 0 is nearer p1
    assert stats["sim_prototype"] == pytest.approx(0.8)  # (0.6 + 0.8 + 1) / 3
    if with_shuffled:
        assert stats["sim_shuffled"] == pytest.approx(2 / 3)  # (0.6 + 0.6 + 0.8) / 3
    else:
        assert "sim_shuffled" not in stats


def test_psl_loss_pulls_the_prototype_similarity_to_theta_not_to_one():
    # one anchor at cosine c to its prototype and 0 to the other (a 3-d embedding): the loss is
    # lowest at c = theta, where the positive (1 - |c - theta|) / tau peaks
    p = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])

    def loss_at(c):
        z = torch.tensor([[c, 0.0, math.sqrt(1 - c * c)]])
        return psl_loss(z, p, torch.tensor([0]), temperature=0.2, theta=0.7)[0].item()

    assert loss_at(0.7) < loss_at(0.95) and loss_at(0.7) < loss_at(0.45)


def test_psl_loss_equals_the_released_interleaved_layout():
    """The released batch interleaves each video's clip (even rows) and its shuffled clip (odd
    rows, label -1); only even rows are anchors; an anchor's denominator holds every prototype,
    every other even row and its own odd row (contrastive_losses.py:1611-1679). Rebuilt here as
    one masked (2B, 2B + K) similarity table on random unit vectors."""
    torch.manual_seed(3)
    b, d, k, tau, th, th_s = 5, 4, 3, 0.2, 0.7, 0.6
    z = torch.nn.functional.normalize(torch.randn(b, d), dim=1)
    zs = torch.nn.functional.normalize(torch.randn(b, d), dim=1)
    protos = torch.randn(k, d)
    y = torch.tensor([0, 2, 0, 1, 2])
    rows = torch.stack([z, zs], dim=1).reshape(2 * b, d)  # 0, 0', 1, 1', ...
    row_label = torch.stack([y, torch.full_like(y, -1)], dim=1).reshape(-1)
    pn = torch.nn.functional.normalize(protos, dim=1)
    total = 0.0
    for r in range(0, 2 * b, 2):
        terms, positive = [], None
        for c in range(2 * b):
            s = float(rows[r] @ rows[c])
            if c == r + 1:
                terms.append(abs(s - th_s) / tau)
            elif c % 2 == 0 and c != r:
                terms.append((abs(s - th) if row_label[c] == row_label[r] else s) / tau)
        for j in range(k):
            s = float(rows[r] @ pn[j])
            if j == int(row_label[r]):
                positive = (1 - abs(s - th)) / tau
                terms.append(positive)
            else:
                terms.append(s / tau)
        total += math.log(sum(math.exp(t) for t in terms)) - positive
    loss, _ = psl_loss(z, protos, y, shuffled=zs, temperature=tau, theta=th, theta_shuffled=th_s)
    assert loss.item() == pytest.approx(total / b, rel=1e-5)


def test_psl_loss_gradient_reaches_the_shuffled_embeddings_and_prototypes():
    z = torch.nn.functional.normalize(torch.randn(4, 3), dim=1).requires_grad_()
    zs = torch.nn.functional.normalize(torch.randn(4, 3), dim=1).requires_grad_()
    p = torch.randn(2, 3, requires_grad=True)
    loss, _ = psl_loss(z, p, torch.tensor([0, 1, 0, 1]), shuffled=zs)
    loss.backward()
    assert all(t.grad is not None and float(t.grad.abs().sum()) > 0 for t in (z, zs, p))


def test_psl_loss_errors_name_the_shapes():
    with pytest.raises(ValueError, match=r"psl_logits: expected embeddings \(B, D\) and prototypes \(K, D\)"):
        psl_loss(Z, torch.zeros(2, 3), LABELS)
    with pytest.raises(ValueError, match=r"shuffled must have the embeddings' shape \(3, 2\), got \(2, 2\)"):
        psl_loss(Z, PROTOTYPES, LABELS, shuffled=SHUFFLED[:2])
    with pytest.raises(ValueError, match="temperature must be > 0"):
        psl_loss(Z, PROTOTYPES, LABELS, temperature=0.0)
    with pytest.raises(ValueError, match=r"psl_loss: expected labels of shape \(3,\)"):
        psl_loss(Z, PROTOTYPES, LABELS[:2])
