import numpy as np
import pytest
from scipy.stats import weibull_min

from dear_ray.scores.openmax import (
    LIBMR_TRANSLATE_AMOUNT,
    OpenMax,
    OpenMaxFitError,
    eucos_distance,
    fit_high,
    fit_weibull,
)


@pytest.mark.parametrize("shape, scale", [(0.8, 1.0), (2.5, 3.0), (12.0, 0.05)])
def test_weibull_fit_recovers_known_parameters(shape, scale):
    x = weibull_min.rvs(shape, scale=scale, size=20000, random_state=np.random.default_rng(0))
    k, c = fit_weibull(x)
    assert k == pytest.approx(shape, rel=0.03)
    assert c == pytest.approx(scale, rel=0.03)


def test_weibull_fit_on_a_libmr_translated_tail_is_the_mle():
    # libMR data sit near 10000 with a tiny spread: the fit must still solve the likelihood equation
    tail = 10000.0 + np.sort(np.random.default_rng(1).gamma(3.0, 0.1, 20))
    tail = tail - tail.min() + 10000.0
    k, c = fit_weibull(tail)
    y = tail / tail.max()
    yk = y**k  # profile-likelihood equation of the shape, scale-free form
    assert np.sum(yk * np.log(y)) / np.sum(yk) - 1 / k - np.mean(np.log(y)) == pytest.approx(0.0, abs=1e-6)
    assert c == pytest.approx(tail.max() * np.mean(yk) ** (1 / k), rel=1e-6)


def test_fit_high_uses_the_largest_values_translated_to_10000():
    rng = np.random.default_rng(2)
    values = rng.gamma(2.0, 0.5, 200)
    tail = np.sort(values)[-20:]
    model = fit_high(values, 20)
    assert model.small_score == tail[0]
    assert (model.shape, model.scale) == pytest.approx(fit_weibull(tail + LIBMR_TRANSLATE_AMOUNT - tail[0]))
    # values below the tail do not change the fit
    assert fit_high(np.concatenate([values, values.min() - rng.random(50)]), 20) == model
    # CDF at x is evaluated at x + 10000 - small_score, increasing in x
    np.testing.assert_allclose(model.w_score(tail[0]),
                               weibull_min.cdf(LIBMR_TRANSLATE_AMOUNT, model.shape, scale=model.scale))
    w = model.w_score(np.linspace(tail[0] - 1, tail[-1] + 1, 50))
    assert np.all(np.diff(w) >= 0) and w[0] < 0.1 and w[-1] > 0.99


def test_eucos_distance_hand_computed():
    d = eucos_distance(np.array([[3.0, 4.0]]), np.array([[0.0, 1.0], [6.0, 8.0]]))
    np.testing.assert_allclose(d, [[np.sqrt(18) / 200 + (1 - 4 / 5), 5 / 200 + 0.0]])


def _clusters(rng, n_per_class=40, k=3, dim=8):
    centres = np.eye(k, dim) * 10
    labels = np.repeat(np.arange(k), n_per_class)
    feats = centres[labels] + rng.normal(size=(labels.size, dim))
    logits = feats @ centres.T / 10  # a linear classifier that is right almost always
    return feats, logits, labels, centres


def test_openmax_revision_hand_checked_and_unknowns_score_higher():
    rng = np.random.default_rng(3)
    feats, logits, labels, centres = _clusters(rng)
    om = OpenMax(tail_size=20).fit(logits, labels, feats)
    correct = logits.argmax(1) == labels
    np.testing.assert_allclose(om.means, np.stack([feats[correct & (labels == k)].mean(0) for k in range(3)]))

    test_f = np.vstack([centres + rng.normal(size=centres.shape) * 0.1, rng.normal(size=(3, 8)) * 10])
    test_z = test_f @ centres.T / 10
    revised = om.revised_logits(test_z, test_f)
    top = test_z.argmax(1)
    dist = eucos_distance(test_f, om.means)[np.arange(6), top]
    w = np.array([om.tails[c].w_score(d) for c, d in zip(top, dist)])
    expected = test_z.copy()
    expected[np.arange(6), top] *= 1 - w  # alpha rank 1: only the top class is revised
    np.testing.assert_allclose(revised[:, :3], expected)
    np.testing.assert_allclose(revised[:, 3], test_z[np.arange(6), top] * w)
    p_unknown = om(test_z, features=test_f)
    np.testing.assert_allclose(p_unknown, om.probabilities(test_z, test_f)[:, 3])
    assert p_unknown[:3].max() < p_unknown[3:].min()
    assert np.all(om.predict(test_z[:3], test_f[:3]) == np.arange(3))


def test_openmax_alpha_rank_weights_and_logit_activations():
    rng = np.random.default_rng(4)
    feats, logits, labels, _ = _clusters(rng)
    om = OpenMax(alpha_rank=2, on="logits").fit(logits, labels)
    z = logits[:5]
    dist = eucos_distance(z, om.means)
    w = np.stack([om.tails[k].w_score(dist[:, k]) for k in range(3)], axis=1)
    order = np.argsort(-z, axis=1)
    alpha = np.zeros_like(z)
    alpha[np.arange(5), order[:, 0]] = 1.0
    alpha[np.arange(5), order[:, 1]] = 0.5  # ((rank + 1) - i) / rank for i = 1, 2
    np.testing.assert_allclose(om.revised_logits(z)[:, :3], z * (1 - w * alpha))


def test_openmax_errors_say_what_is_wrong():
    rng = np.random.default_rng(5)
    feats, logits, labels, _ = _clusters(rng)
    with pytest.raises(ValueError, match="not fitted"):
        OpenMax()(logits, features=feats)
    with pytest.raises(ValueError, match="needs the pooled features"):
        OpenMax().fit(logits, labels)
    wrong = labels.copy()
    wrong[labels == 1] = 0  # class 1 never correctly classified
    with pytest.raises(OpenMaxFitError, match="class 1 has 0 correctly classified"):
        OpenMax().fit(logits, wrong, feats)
    om = OpenMax().fit(logits, labels, feats)
    with pytest.raises(ValueError, match="fitted on 3 classes"):
        om(logits[:, :2], features=feats)
    with pytest.raises(ValueError, match="on='pixels'"):
        OpenMax(on="pixels")
