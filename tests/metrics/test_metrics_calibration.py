import numpy as np
import pytest

from dear_ray.metrics import ece, reliability_bins


def test_ece_hand_computed():
    conf = np.array([0.95, 0.95, 0.55, 0.55, 0.55, 0.05])
    correct = np.array([1, 0, 1, 1, 1, 0])
    # bins (0.9333, 1]: acc 0.5 conf 0.95; (0.5333, 0.6]: acc 1 conf 0.55; [0, 0.0667]: acc 0 conf 0.05
    expected = 2 / 6 * 0.45 + 3 / 6 * 0.45 + 1 / 6 * 0.05
    assert ece(conf, correct) == pytest.approx(expected)


def test_perfectly_calibrated_bins_give_zero():
    conf = np.repeat([0.25, 0.75], 4)
    correct = np.array([1, 0, 0, 0, 1, 1, 1, 0])
    assert ece(conf, correct, num_bins=10) == pytest.approx(0.0)


def test_bins_are_right_closed_and_zero_goes_to_the_first():
    rb = reliability_bins([0.0, 0.5, 0.5000001, 1.0], [1, 1, 0, 0], num_bins=2)
    np.testing.assert_array_equal(rb.count, [2, 2])
    np.testing.assert_allclose(rb.accuracy, [1.0, 0.0])
    assert np.isnan(reliability_bins([0.9], [1], num_bins=2).accuracy[0])


def test_bad_inputs():
    with pytest.raises(ValueError, match=r"confidences: must lie in \[0, 1\]"):
        ece([1.2], [1])
    with pytest.raises(ValueError, match="correct: expected a 1-D array of booleans"):
        ece([0.2], [2])
    with pytest.raises(ValueError, match="mismatched lengths: confidences=2, correct=1"):
        ece([0.2, 0.3], [1])
    with pytest.raises(ValueError, match="num_bins=0"):
        ece([0.2], [1], num_bins=0)
