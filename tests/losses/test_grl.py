import pytest
import torch

from dear_ray.losses import grad_reverse


@pytest.mark.parametrize("alpha", [0.0, 0.5, 1.0, 3.0])
def test_grad_reverse_is_identity_forward_and_flips_scaled_gradient(alpha):
    x = torch.tensor([[1.0, -2.0], [0.5, 4.0]], requires_grad=True)
    weights = torch.tensor([[3.0, 1.0], [-1.0, 2.0]])
    y = grad_reverse(x, alpha)
    assert torch.equal(y, x)
    (y * weights).sum().backward()
    assert torch.allclose(x.grad, -alpha * weights)


def test_grad_reverse_flips_only_what_is_behind_it():
    x = torch.tensor([2.0], requires_grad=True)
    y = x * 3.0
    (grad_reverse(y, 0.5) ** 2).sum().backward()
    # d/dx (3x)^2 = 18x = 36; reversed and scaled by 0.5 -> -18
    assert float(x.grad) == pytest.approx(-18.0)


def test_grad_reverse_rejects_negative_alpha():
    with pytest.raises(ValueError, match="alpha must be >= 0"):
        grad_reverse(torch.zeros(1), -1.0)
