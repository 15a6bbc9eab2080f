import numpy as np
import pytest
import torch
from scipy.special import log_softmax, softmax

from dear_ray.losses import sdn_mask_loss, sdn_scene_loss

LOGITS = torch.tensor([[1.0, 0.0, -1.0, 2.0], [0.5, 0.5, 3.0, 0.0]], dtype=torch.float64)
Q = torch.tensor([[0.1, 0.2, 0.3, 0.4], [0.7, 0.1, 0.1, 0.1]], dtype=torch.float64)


def test_soft_scene_loss():
    loss, st = sdn_scene_loss(LOGITS, Q, kind="soft")
    expected = -(Q.numpy() * log_softmax(LOGITS.numpy(), axis=1)).sum(1).mean()
    assert float(loss) == pytest.approx(expected, rel=1e-12)
    assert st["scene_acc"] == 0.5  # argmax q = [3, 0], predictions [3, 2]


def test_hard_scene_loss_uses_argmax_or_integer_labels():
    ls = log_softmax(LOGITS.numpy(), axis=1)
    expected = -(ls[0, 3] + ls[1, 0]) / 2
    assert float(sdn_scene_loss(LOGITS, Q, kind="hard")[0]) == pytest.approx(expected, rel=1e-12)
    assert float(sdn_scene_loss(LOGITS, torch.tensor([3, 0]))[0]) == pytest.approx(expected, rel=1e-12)
    with pytest.raises(ValueError, match=r"expected scene labels \(B, P\) = \(2, 4\)"):
        sdn_scene_loss(LOGITS, Q[:, :3])
    with pytest.raises(ValueError, match="unknown kind 'fuzzy'"):
        sdn_scene_loss(LOGITS, Q, kind="fuzzy")


def test_mask_loss_is_negative_entropy():
    loss, st = sdn_mask_loss(LOGITS)
    p = softmax(LOGITS.numpy(), axis=1)
    entropy = -(p * np.log(p)).sum(1).mean()
    assert float(loss) == pytest.approx(-entropy, rel=1e-12)
    assert st["mask_entropy"] == pytest.approx(entropy, rel=1e-12)


def test_mask_loss_gradient_step_increases_entropy():
    """The paper's intent: a descent step on L_mask makes the masked-clip prediction LESS certain."""
    logits = LOGITS.clone().requires_grad_(True)
    loss, before = sdn_mask_loss(logits)
    loss.backward()
    with torch.no_grad():
        stepped = logits - 0.5 * logits.grad
    _, after = sdn_mask_loss(stepped)
    assert after["mask_entropy"] > before["mask_entropy"]
