"""The OpenOOD v1.5 post-hoc detectors against hand computations on tiny arrays (higher = more unknown)."""

import numpy as np
import pytest
from scipy.special import logsumexp

from dear_ray.scores import create_score
from dear_ray.scores.posthoc import KNN, Mahalanobis, ReAct, TemperatureScaling, ViM, ash_b, ash_energy, gen


def test_gen_is_the_generalised_entropy_of_the_top_m_probabilities():
    z = np.array([[0.0, np.log(3.0)]])  # p = (1/4, 3/4)
    both = 2 * (0.25 * 0.75) ** 0.1
    assert gen(z) == pytest.approx([both])  # OpenOOD gamma 0.1, M 100 >= K: every class
    assert gen(z, m=1) == pytest.approx([0.75 ** 0.1 * 0.25 ** 0.1])  # the top class only
    assert gen(z, gamma=1.0) == pytest.approx([2 * 0.1875])
    assert create_score("gen")(z) == pytest.approx([both])
    flat, sure = gen(np.zeros((1, 4))), gen(np.array([[20.0, 0, 0, 0]]))
    assert flat > sure  # higher = more unknown


def test_temperature_is_the_nll_minimiser_on_held_out_logits():
    # three videos with logits (2, 0), labels 0, 0, 1: NLL = -2 log s(a) - log(1 - s(a)), a = 2 / T,
    # minimal at s(a) = 2/3, i.e. a = ln 2, T = 2 / ln 2
    z = np.array([[2.0, 0.0]] * 3)
    ts = TemperatureScaling().fit(logits=z, labels=np.array([0, 0, 1]))
    assert ts.temperature == pytest.approx(2 / np.log(2), rel=1e-4)
    assert ts(z) == pytest.approx(np.full(3, 1 / 3), rel=1e-4)  # 1 - max softmax(z / T) = 1 - 2/3
    with pytest.raises(ValueError, match="not fitted"):
        TemperatureScaling()(z)


def test_mahalanobis_uses_class_means_and_one_tied_covariance():
    # class 0: (0,0), (2,0) -> mean (1,0); class 1: (0,2), (0,4) -> mean (0,3); the centred
    # videos (+-1, 0), (0, +-1) have covariance I / 2, precision 2 I
    x = np.array([[0.0, 0], [2, 0], [0, 2], [0, 4]])
    md = Mahalanobis().fit(logits=np.zeros((4, 2)), labels=np.array([0, 0, 1, 1]), features=x)
    np.testing.assert_allclose(md.means, [[1, 0], [0, 3]])
    np.testing.assert_allclose(md.precision, 2 * np.eye(2), atol=1e-12)
    # (1,1): 2 * (0 + 1) = 2 to class 0, 2 * (1 + 4) = 10 to class 1; (3,3): 26 and 18
    assert md(None, features=np.array([[1.0, 1], [3, 3]])) == pytest.approx([2.0, 18.0])
    with pytest.raises(ValueError, match="needs the pooled features"):
        md(np.zeros((1, 2)))


def test_knn_is_the_kth_squared_distance_between_normalised_features():
    bank = np.array([[1.0, 0], [0, 3], [2, 2]])  # normalised: e1, e2, (1,1)/sqrt2
    knn = KNN(k=1).fit(features=bank)
    query = np.array([[2.0, 0]])  # -> e1: squared distances 0, 2, 2 - sqrt2
    assert knn(None, features=query) == pytest.approx([0.0])
    assert KNN(k=2).fit(features=bank)(None, features=query) == pytest.approx([2 - np.sqrt(2)])
    assert KNN(k=3).fit(features=bank)(None, features=query) == pytest.approx([2.0])
    assert KNN(k=50).fit(features=bank)(None, features=query) == pytest.approx([2.0])  # k capped at N
    # a training video is not its own neighbour: e1's nearest other is (1,1)/sqrt2
    loo = knn(None, features=bank, leave_one_out=True)
    assert loo == pytest.approx([2 - np.sqrt(2), 2 - np.sqrt(2), 2 - np.sqrt(2)])
    assert create_score("knn").k == 50  # OpenOOD's configs/postprocessors/knn.yml


def test_vim_virtual_logit_on_the_residual_space_minus_the_energy():
    w, b = np.array([[1.0, 0, 0], [0, 1, 0]]), np.zeros(2)  # u = -pinv(W) b = 0
    x = np.array([[2.0, 0, 0], [-2, 0, 0], [0, 1, 0], [0, -1, 0], [0, 0, 0.5], [0, 0, -0.5]])
    # covariance diag(8, 2, 0.5) / 6: principal space (dim 2) = axes 0, 1, residual = axis 2;
    # mean max logit (2 + 0 + 1 + 0 + 0 + 0) / 6 = 1/2, mean residual norm 1/6 -> alpha = 3
    vim = ViM(w, b, dim=2).fit(features=x)
    assert vim.alpha == pytest.approx(3.0)
    q = np.array([[1.0, 0, 2]])
    assert vim(None, features=q) == pytest.approx([3 * 2 - logsumexp([1.0, 0.0])])
    assert ViM(w, b).fit(features=x).dim == 1  # F // 2 below 512-d features
    with pytest.raises(ValueError, match="dim=3 must be in"):
        ViM(w, b, dim=3).fit(features=x)


def test_react_clips_at_the_training_percentile_then_takes_the_energy():
    train = np.arange(1.0, 11.0).reshape(5, 2)  # values 1..10: 90th percentile 9.1 (linear)
    w, b = np.eye(2), np.array([0.5, 0.0])
    react = ReAct(w, b).fit(features=train)
    assert react.clip == pytest.approx(9.1)
    assert react(None, features=np.array([[20.0, 3.0]])) == pytest.approx([-logsumexp([9.1 + 0.5, 3.0])])


def test_ash_b_keeps_the_top_values_at_the_row_mean_of_the_kept():
    x = np.array([[1.0, 2, 3, 4, 10]])  # sum 20
    np.testing.assert_allclose(ash_b(x, 60), [[0, 0, 0, 10, 10]])  # keep 5 - round(3) = 2
    np.testing.assert_allclose(ash_b(x, 90), [[0, 0, 0, 0, 20]])  # keep 5 - round(4.5) = 5 - 4 (half to even)
    w = np.array([[0.0, 0, 0, 1, 0], [0, 0, 0, 0, 1]])
    assert ash_energy(x, w, np.zeros(2), percentile=60) == pytest.approx([-(10 + np.log(2))])
    ash = create_score("ash", weight=w, bias=np.zeros(2))  # OpenOOD's default percentile 90: ash_b
    assert ash(None, features=x) == pytest.approx([-logsumexp([0.0, 20.0])])


def test_feature_detectors_describe_their_layer_statistics_and_hyper_parameters():
    x = np.abs(np.random.default_rng(0).normal(size=(12, 4)))
    y, w, b = np.arange(12) % 2, np.array([[1.0, 0, 0, 1], [0, 1, 1, 0]]), np.zeros(2)
    z = x @ w.T
    fitted = {
        "mahalanobis": (Mahalanobis().fit(logits=z, labels=y, features=x),
                        "2 class means and one tied covariance (pseudo-inverse) of 12 training videos"),
        "knn": (KNN(5).fit(features=x), "bank of 12 training videos, k=5"),
        "vim": (ViM(w, b, dim=2).fit(features=x), "principal subspace dim=2"),
        "react": (ReAct(w, b, percentile=80).fit(features=x), "80th percentile of the values of 12 training"),
        "ash": (create_score("ash", weight=w, bias=b, percentile=70), "pruning of each video's vector at the 70th"),
    }
    for name, (detector, said) in fitted.items():
        text = detector.describe()
        assert text.startswith("pooled backbone features (the classifier's input), view-averaged, F=4"), name
        assert said in text, (name, text)
    assert KNN(3).describe() == "knn: not fitted"
