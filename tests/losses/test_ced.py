import pytest
import torch

from dear_ray.losses import ced_alternating_loss, ced_joint_loss, edl_loss, hsic_biased, hsic_unbiased

GEN = torch.Generator().manual_seed(0)
B, K, W = 6, 4, 5
LABELS = torch.tensor([0, 1, 2, 3, 0, 1])


def _leaves(scale, *shape):
    return [(torch.rand(*shape, generator=GEN, dtype=torch.float64) * scale + 1).requires_grad_(True)
            for _ in range(3)]


def test_joint_loss_is_the_spec_formula():
    a1, a2, a3 = _leaves(5.0, B, K)
    loss, stats = ced_joint_loss((a1, a2, a3), LABELS)
    edl = sum(float(edl_loss(a.detach(), LABELS, loss_type="log")[0]) for a in (a1, a2, a3))
    h12, h13 = float(hsic_biased(a1.detach(), a2.detach())), float(hsic_biased(a1.detach(), a3.detach()))
    assert loss.item() == pytest.approx(0.1 * (edl - h12 - h13), rel=1e-12)
    assert stats["hsic_12"] == pytest.approx(h12) and stats["ced_edl"] == pytest.approx(edl)
    loss.backward()  # joint mode: no stop-gradient, every branch receives a gradient
    assert all(a.grad is not None and a.grad.abs().sum() > 0 for a in (a1, a2, a3))


@pytest.mark.parametrize(("iteration", "sign"), [(1, 1.0), (7, 1.0), (0, -1.0), (4, -1.0)])
def test_alternating_loss_phases_and_stop_gradients(iteration, sign):
    alphas = [a.detach() for a in _leaves(5.0, B, K)]
    z1, z2, z3 = _leaves(1.0, B, W)
    loss, stats = ced_alternating_loss(alphas, (z1, z2, z3), LABELS, iteration=iteration)
    edl = sum(float(edl_loss(a, LABELS)[0]) for a in alphas)
    hsic = (hsic_unbiased(z1, z2) + hsic_unbiased(z1, z3)).item()
    assert loss.item() == pytest.approx(0.1 * (edl + sign * 0.5 * hsic), rel=1e-12)
    assert stats["hsic_phase"] == sign
    loss.backward()
    if sign > 0:  # odd: minimise w.r.t. f1 only
        assert z1.grad.abs().sum() > 0 and z2.grad is None and z3.grad is None
    else:  # even: maximise w.r.t. f2, f3 only
        assert z1.grad is None and z2.grad.abs().sum() > 0 and z3.grad.abs().sum() > 0


def test_alternating_gradient_directions():
    """Odd steps decrease HSIC(z1, z2) by moving z1; even steps increase it by moving z2."""
    alphas = [a.detach() for a in _leaves(5.0, B, K)]
    z1, z2, z3 = _leaves(1.0, B, W)
    before = (hsic_unbiased(z1, z2) + hsic_unbiased(z1, z3)).item()
    ced_alternating_loss(alphas, (z1, z2, z3), LABELS, iteration=1)[0].backward()
    with torch.no_grad():
        z1_new = z1 - 1.0 * z1.grad
    after_min = (hsic_unbiased(z1_new, z2) + hsic_unbiased(z1_new, z3)).item()
    ced_alternating_loss(alphas, (z1, z2, z3), LABELS, iteration=2)[0].backward()
    with torch.no_grad():
        z2_new, z3_new = z2 - 1.0 * z2.grad, z3 - 1.0 * z3.grad
    after_max = (hsic_unbiased(z1, z2_new) + hsic_unbiased(z1, z3_new)).item()
    assert after_min < before < after_max


def test_released_alternating_mode_leaves_hsic_undivided():
    """DEAR's DebiasHead.hsic_loss in alternating mode returns the estimator's numerator (no
    1 / (N (N - 3))): with N = B the HSIC terms are B (B - 3) times the normalised ones."""
    alphas = [a.detach() for a in _leaves(5.0, B, K)]
    z1, z2, z3 = _leaves(1.0, B, W)
    normal, s1 = ced_alternating_loss(alphas, (z1, z2, z3), LABELS, iteration=1)
    released, s2 = ced_alternating_loss(alphas, (z1, z2, z3), LABELS, iteration=1,
                                        hsic_normalised=False)
    edl = sum(float(edl_loss(a, LABELS)[0]) for a in alphas)
    hsic = (hsic_unbiased(z1, z2) + hsic_unbiased(z1, z3)).item()
    assert released.item() == pytest.approx(0.1 * (edl + 0.5 * B * (B - 3) * hsic), rel=1e-10)
    assert s2["hsic_12"] == pytest.approx(B * (B - 3) * s1["hsic_12"], rel=1e-10)
    assert normal.item() != pytest.approx(released.item())


def test_dear_alt_head_option_reaches_the_loss():
    from dear_ray.models import build_recognizer

    for normalised in (True, False):
        model = build_recognizer(backbone="r3d18_tiny", head="dear_alt", num_classes=3,
                                 head_options={"temporal_kernel": 1,
                                               "hsic_normalised": normalised})
        assert model.cls_head.ced_hsic_normalised is normalised
