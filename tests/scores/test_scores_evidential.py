import numpy as np
import pytest

from dear_ray.scores import evidential as E


def test_vacuity_hand_computed():
    # zero logits: evidence 1 per class, alpha 2, S = 2K, u = K / 2K
    np.testing.assert_allclose(E.vacuity(np.zeros((2, 4))), [0.5, 0.5])
    z = np.array([[np.log(3.0), 0.0]])  # evidence [3, 1] -> alpha [4, 2], S = 6
    np.testing.assert_allclose(E.vacuity(z), [2 / 6])
    np.testing.assert_allclose(E.expected_probability(z), [[4 / 6, 2 / 6]])
    np.testing.assert_allclose(E.evidential_msp(z), [1 - 4 / 6])


def test_exp_evidence_is_clamped_at_10():
    np.testing.assert_allclose(E.evidence([[50.0, -50.0]]), [[np.exp(10), np.exp(-10)]])
    np.testing.assert_allclose(E.vacuity([[50.0, 50.0]]), E.vacuity([[10.0, 10.0]]))


def test_relu_and_softplus_evidence():
    z = np.array([[-1.0, 0.0, 2.0]])
    np.testing.assert_allclose(E.evidence(z, "relu"), [[0.0, 0.0, 2.0]])
    np.testing.assert_allclose(E.evidence(z, "softplus"), np.log1p(np.exp(z)))
    np.testing.assert_allclose(E.vacuity(z, "relu"), [3 / 5])  # alpha [1, 1, 3]


def test_unknown_evidence_kind_lists_options():
    with pytest.raises(ValueError, match="exp, relu, softplus"):
        E.vacuity(np.zeros((1, 2)), "sigmoid")
