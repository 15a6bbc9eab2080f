import numpy as np
import pytest
from scipy.stats import entropy as scipy_entropy

from dear_ray.scores import softmax as S


def test_msp_hand_computed():
    z = np.array([[0.0, np.log(3.0)], [2.0, 2.0]])  # p = [1/4, 3/4] and [1/2, 1/2]
    np.testing.assert_allclose(S.msp(z), [0.25, 0.5], rtol=1e-12)
    np.testing.assert_allclose(S.rpl(z), [0.25, 0.5], rtol=1e-12)


def test_entropy_matches_scipy_and_is_stable():
    rng = np.random.default_rng(0)
    z = rng.normal(size=(20, 7)) * 3
    p = np.exp(z) / np.exp(z).sum(1, keepdims=True)
    np.testing.assert_allclose(S.entropy(z), scipy_entropy(p, axis=1), rtol=1e-10)
    # huge logits: no overflow, a confident prediction has ~0 entropy
    np.testing.assert_allclose(S.entropy([[1000.0, 0.0, 0.0]]), [0.0], atol=1e-12)
    np.testing.assert_allclose(S.entropy([[5.0, 5.0, 5.0, 5.0]]), [np.log(4)], rtol=1e-12)


def test_energy_and_maxlogit_hand_computed():
    z = np.array([[1.0, 2.0, 3.0], [1000.0, 1000.0, -5.0]])
    np.testing.assert_allclose(S.energy(z), [-np.log(np.e + np.e**2 + np.e**3), -(1000 + np.log(2))], rtol=1e-12)
    np.testing.assert_allclose(S.maxlogit(z), [-3.0, -1000.0])


def test_higher_means_more_uncertain():
    confident, flat = [10.0, 0.0, 0.0], [1.0, 1.0, 1.0]
    for fn in (S.msp, S.entropy, S.energy, S.maxlogit):
        a, b = fn(np.array([confident, flat]))
        assert a < b, fn.__name__


@pytest.mark.parametrize("bad, msg", [([1.0, 2.0], "2-D"), ([[1.0, np.nan]], "non-finite"),
                                      (np.zeros((3, 0)), "at least one class")])
def test_bad_logits_raise(bad, msg):
    with pytest.raises(ValueError, match=msg):
        S.msp(bad)
