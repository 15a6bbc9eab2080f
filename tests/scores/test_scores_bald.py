import numpy as np
import pytest
from scipy.special import softmax
from scipy.stats import entropy

from dear_ray.scores.bald import bald


def test_agreeing_passes_have_zero_bald():
    z = np.random.default_rng(0).normal(size=(1, 5, 4))
    np.testing.assert_allclose(bald(np.repeat(z, 6, axis=0)), np.zeros(5), atol=1e-12)


def test_disagreeing_confident_passes_give_log2():
    # pass 1 certain of class 0, pass 2 certain of class 1: H[mean] = log 2, mean H = 0
    z = np.array([[[60.0, 0.0]], [[0.0, 60.0]]])
    np.testing.assert_allclose(bald(z), [np.log(2)], rtol=1e-12)


def test_matches_direct_formula_on_random_passes():
    z = np.random.default_rng(1).normal(size=(10, 30, 6)) * 2
    p = softmax(z, axis=-1)
    expected = entropy(p.mean(0), axis=-1) - entropy(p, axis=-1).mean(0)
    np.testing.assert_allclose(bald(z), expected, rtol=1e-10, atol=1e-14)
    assert np.all(bald(z) >= 0)


def test_needs_three_dimensions():
    with pytest.raises(ValueError, match=r"sample_logits: expected a 3-D array \(S, N, K\)"):
        bald(np.zeros((4, 3)))
