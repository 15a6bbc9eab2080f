import math

import pytest

from dear_ray.losses import annealing_coefficient


def test_annealing_endpoints_and_midpoint():
    assert annealing_coefficient(0, 50) == pytest.approx(0.01)
    # the last 0-based epoch of 50 reaches lambda0 ** (1/50), never 1
    assert annealing_coefficient(49, 50) == pytest.approx(0.01 ** (1 / 50))
    assert annealing_coefficient(49, 50) < 1.0
    assert annealing_coefficient(25, 50) == pytest.approx(0.1)
    assert annealing_coefficient(3, 10, lambda0=0.5) == pytest.approx(math.pow(0.5, 0.7))


def test_annealing_is_increasing():
    values = [annealing_coefficient(e, 20) for e in range(20)]
    assert all(a < b for a, b in zip(values, values[1:]))


@pytest.mark.parametrize(("epoch", "total", "lambda0", "match"), [
    (50, 50, 0.01, "epoch must be 0-based"),
    (-1, 50, 0.01, "epoch must be 0-based"),
    (0, 0, 0.01, "total_epochs must be >= 1"),
    (0, 5, 0.0, "lambda0 must be in"),
])
def test_annealing_rejects_bad_input(epoch, total, lambda0, match):
    with pytest.raises(ValueError, match=match):
        annealing_coefficient(epoch, total, lambda0)
