"""SCALE and DICE against hand computations and OpenOOD v1.5's formulas (higher = more unknown)."""

import numpy as np
import pytest
from scipy.special import logsumexp

from dear_ray.scores import create_score
from dear_ray.scores.posthoc import ash_b
from dear_ray.scores.shaping import DICE, Scale, scale_features

RNG = np.random.default_rng(3)
X = np.maximum(RNG.normal(0.5, 1.0, (9, 12)), 0.0)  # post-ReLU-like features
W, B = RNG.normal(size=(4, 12)), RNG.normal(size=4)


def test_scale_multiplies_the_whole_vector_by_exp_of_sum_over_top_sum():
    x = np.array([[3.0, 1.0, 0.0, 0.0]])  # sum 4
    # percentile 75: keep 4 - round(3) = 1 value (3): r = 4 / 3; percentile 50: keep 2 (3 + 1): r = 1
    np.testing.assert_allclose(scale_features(x, 75), x * np.exp(4 / 3))
    np.testing.assert_allclose(scale_features(x, 50), x * np.e)
    w, b = np.array([[1.0, 0, 0, 0], [0, 1, 0, 0]]), np.array([0.5, 0.0])
    expected = -logsumexp([3 * np.exp(4 / 3) + 0.5, np.exp(4 / 3)])
    assert Scale(w, b, percentile=75)(None, features=x) == pytest.approx([expected])
    assert create_score("scale", weight=w, bias=b).percentile == 85  # configs/postprocessors/scale.yml


def test_scale_keeps_what_ash_s_would_prune():
    x = np.array([[1.0, 2, 3, 4, 10]])  # keep 5 - round(3) = 2 at 60: s2 = 14, r = 20 / 14
    scaled = scale_features(x, 60)
    np.testing.assert_allclose(scaled, x * np.exp(20 / 14))
    assert np.count_nonzero(scaled) == 5 and np.count_nonzero(ash_b(x, 60)) == 2


def _openood_scale(x, w, b, percentile):
    """OpenOOD `scale_net.py`: s1 = row sum, s2 = sum of the topk after zeroing the rest, the
    unpruned input times exp(s1 / s2), the fc, then the logsumexp confidence."""
    n = x.shape[1]
    k = n - int(np.round(n * percentile / 100.0))
    s2 = np.sort(x, axis=1)[:, ::-1][:, :k].sum(axis=1)
    out = (x * np.exp(x.sum(axis=1) / s2)[:, None]) @ w.T + b
    return logsumexp(out, axis=1)


@pytest.mark.parametrize("percentile", [65, 85, 95])
def test_scale_is_minus_openoods_confidence(percentile):
    np.testing.assert_allclose(Scale(W, B, percentile=percentile)(None, features=X),
                               -_openood_scale(X, W, B, percentile), rtol=1e-10)


def test_scale_rejects_vectors_without_a_positive_top():
    with pytest.raises(ValueError, match="1 video\\(s\\) whose 1 largest feature values sum to <= 0"):
        scale_features(np.array([[1.0, 2, 3, 4], [0, 0, 0, 0]]), 85)
    with pytest.raises(ValueError, match="percentile=100"):
        Scale(W, B, percentile=100)


def test_dice_masks_the_weights_by_their_contribution_at_the_mean_feature():
    train = np.array([[0.0, 1.0], [2.0, 3.0]])  # mean (1, 2)
    w, b = np.array([[1.0, -1.0], [0.5, 2.0]]), np.zeros(2)
    # contributions mean * W = [[1, -2], [0.5, 4]]; their median (linear) (0.5 + 1) / 2 = 0.75:
    # kept W = [[1, 0], [0, 2]]; x = (1, 1) -> logits (1, 2)
    dice = DICE(w, b, percentile=50).fit(features=train)
    assert dice.threshold == pytest.approx(0.75)
    np.testing.assert_array_equal(dice.mask, [[True, False], [False, True]])
    assert dice(None, features=np.array([[1.0, 1.0]])) == pytest.approx([-logsumexp([1.0, 2.0])])
    assert create_score("dice", weight=w, bias=b).percentile == 90  # configs/postprocessors/dice.yml
    assert "(2 of 4 weights kept), mean of 2 training videos" in dice.describe()
    with pytest.raises(ValueError, match="not fitted"):
        DICE(w, b)(None, features=train)


def _openood_dice(train, x, w, b, p):
    """OpenOOD `dice_postprocessor.py`: mean train activation, contrib = mean * W, mask where
    contrib > np.percentile(contrib, p), vote = x * masked W summed, + bias, logsumexp."""
    contrib = train.mean(0)[None, :] * w
    masked = w * (contrib > np.percentile(contrib, p))
    return logsumexp((x[:, None, :] * masked).sum(2) + b, axis=1)


@pytest.mark.parametrize("percentile", [50, 90])
def test_dice_is_minus_openoods_confidence(percentile):
    dice = DICE(W, B, percentile=percentile).fit(features=X[:6])
    np.testing.assert_allclose(dice(None, features=X[6:]), -_openood_dice(X[:6], X[6:], W, B, percentile),
                               rtol=1e-10)
