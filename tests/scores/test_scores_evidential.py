import numpy as np
import pytest
from scipy import stats

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


def test_mpu_is_minus_the_margin_of_the_predicted_alpha_over_the_others():
    z = np.array([[3.0, 1.0, 0.0], [0.0, 0.0, 0.0]])  # relu: alpha (4, 2, 1), S 7; and the flat (1, 1, 1)
    # MPU = (K - 1) alpha_max - sum of the others = 2 * 4 - (2 + 1) = 5; flat: 0 (the most uncertain)
    np.testing.assert_allclose(E.mpu(z, "relu"), [-5.0, 0.0])
    z = np.array([[np.log(3.0), 0.0, 0.0]])  # exp: alpha (4, 2, 2): 2 * 4 - 4 = 4
    np.testing.assert_allclose(E.mpu(z), [-4.0])


def test_mpu_orders_the_papers_counterexample_where_vacuity_fails():
    # "Stop Guessing": alpha (10, 1, 1) has the lower loss for label 0 than (10, 10, 1); MPU says
    # it is the more certain (18 > 9), vacuity the less certain (3/12 > 3/21)
    z = np.array([[9.0, 0.0, 0.0], [9.0, 9.0, 0.0]])  # relu evidence
    np.testing.assert_allclose(E.mpu(z, "relu"), [-18.0, -9.0])
    np.testing.assert_allclose(E.vacuity(z, "relu"), [3 / 12, 3 / 21])


def test_differential_entropy_hand_computed():
    # Dir(1, 1, 1) is uniform on the simplex of area 1/2: entropy log(1/2); K = 2, alpha (2, 1) is
    # Beta(2, 1), density 2p: -int 2p log(2p) dp = 1/2 - log 2
    np.testing.assert_allclose(E.differential_entropy(np.zeros((1, 3)), "relu"), [-np.log(2.0)])
    np.testing.assert_allclose(E.differential_entropy(np.array([[1.0, 0.0]]), "relu"), [0.5 - np.log(2.0)])
    z = np.array([[2.0, -1.0, 0.5], [0.0, 0.0, 0.0], [8.0, -3.0, -3.0]])
    expected = [stats.dirichlet(a).entropy() for a in E.dirichlet_alpha(z)]
    np.testing.assert_allclose(E.differential_entropy(z), expected, rtol=1e-10)
    assert np.all(np.diff(E.differential_entropy(np.array([[0.0, 0], [2, 0], [6, 0]]))) < 0)  # evidence: lower


def test_mutual_information_hand_computed_and_by_sampling():
    # alpha (1, 1): p ~ U(0, 1); H[E p] = log 2, E H[p] = 2 int -p log p dp = 1/2
    np.testing.assert_allclose(E.mutual_information(np.zeros((1, 2)), "relu"), [np.log(2.0) - 0.5])
    alpha = np.array([4.0, 2.0, 1.0])
    p = stats.dirichlet(alpha).rvs(size=200_000, random_state=np.random.default_rng(0))
    mean = p.mean(axis=0)
    sampled = -np.sum(mean * np.log(mean)) + np.mean(np.sum(p * np.log(p), axis=1))
    np.testing.assert_allclose(E.mutual_information(np.array([[3.0, 1.0, 0.0]]), "relu"), [sampled], atol=2e-3)
    assert E.mutual_information(np.array([[10.0, 10.0]]))[0] < E.mutual_information(np.zeros((1, 2)))[0]


def test_new_evidential_scores_are_registered_with_the_evidence_option():
    from dear_ray.scores import create_score

    z = np.array([[1.0, -0.5, 2.0]])
    for name, fn in (("mpu", E.mpu), ("diff_entropy", E.differential_entropy), ("mutual_info", E.mutual_information)):
        np.testing.assert_allclose(create_score(name)(z), fn(z))
        np.testing.assert_allclose(create_score(name, evidence="softplus")(z), fn(z, "softplus"))
        with pytest.raises(ValueError, match=f"{name}: evidence='tanh'"):
            create_score(name, evidence="tanh")
