"""RMDS, fDBD, NNGuide and SHE against hand computations and OpenOOD v1.5's formulas."""

import numpy as np
import pytest
from scipy.special import logsumexp
from sklearn.covariance import EmpiricalCovariance

from dear_ray.scores import create_score
from dear_ray.scores.distances import FDBD, RMDS, SHE, NNGuide

RNG = np.random.default_rng(5)
K, F = 3, 4
CENTRES = np.eye(K, F) * 4
TRAIN_Y = np.arange(30) % K
TRAIN_X = CENTRES[TRAIN_Y] + RNG.normal(size=(30, F))
QUERY = np.vstack([CENTRES + RNG.normal(size=(K, F)), RNG.normal(size=(4, F)) * 3])
W, B = CENTRES / 2 + RNG.normal(size=(K, F)) * 0.3, RNG.normal(size=K) * 0.1


def test_rmds_subtracts_the_background_distance_hand_computed():
    # class 0: (0,0), (2,0), mean (1,0); class 1: (0,2), (0,4), mean (0,3): tied covariance I/2
    # (precision 2I). Background: mean (1/2, 3/2), covariance [[3/4, -3/4], [-3/4, 11/4]],
    # precision [[11/6, 1/2], [1/2, 1/2]]. At (1,1): MD_0 = 1/3, min_k MD_k = 2 (class 0)
    x = np.array([[0.0, 0], [2, 0], [0, 2], [0, 4]])
    rmds = RMDS().fit(logits=np.zeros((4, 2)), labels=np.array([0, 0, 1, 1]), features=x)
    np.testing.assert_allclose(rmds.mean, [0.5, 1.5])
    np.testing.assert_allclose(rmds.precision, [[11 / 6, 0.5], [0.5, 0.5]], atol=1e-12)
    assert rmds(None, features=np.array([[1.0, 1.0]])) == pytest.approx([2 - 1 / 3])
    assert "3 class means" not in rmds.describe() and "2 class means" in rmds.describe()


def _openood_rmds(train_x, train_y, x, k):
    """OpenOOD `rmds_postprocessor.py`: class means, EmpiricalCovariance of the class-centred
    features and of the features centred on the global mean; confidence max_k (-MD_k + MD_0)."""
    means = [train_x[train_y == c].mean(0) for c in range(k)]
    centred = np.concatenate([train_x[train_y == c] - means[c] for c in range(k)])
    precision = EmpiricalCovariance(assume_centered=False).fit(centred).precision_
    whole = train_x.mean(0)
    whole_precision = EmpiricalCovariance(assume_centered=False).fit(train_x - whole).precision_
    background = -np.einsum("nf,fg,ng->n", x - whole, whole_precision, x - whole)
    scores = [-np.einsum("nf,fg,ng->n", x - m, precision, x - m) - background for m in means]
    return np.max(scores, axis=0)


def test_rmds_is_minus_openoods_confidence():
    rmds = create_score("rmds").fit(logits=np.zeros((30, K)), labels=TRAIN_Y, features=TRAIN_X)
    np.testing.assert_allclose(rmds(None, features=QUERY), -_openood_rmds(TRAIN_X, TRAIN_Y, QUERY, K), rtol=1e-8)


def test_fdbd_sums_boundary_distances_over_the_distance_to_the_train_mean():
    w, b = np.array([[1.0, 0], [0, 1], [-1, 0]]), np.zeros(3)
    fdbd = FDBD(w, b).fit(features=np.array([[0.0, 0], [2, 2]]))  # mean (1, 1)
    # x = (2, 1): logits (2, 1, -2), predicted 0; |2 - 1| / ||(1, -1)|| + |2 + 2| / ||(2, 0)|| = 1/sqrt2 + 2,
    # over ||x - (1, 1)|| = 1
    x = np.array([[2.0, 1.0]])
    assert fdbd(None, features=x) == pytest.approx([-(2 + 1 / np.sqrt(2))])
    by_norm = FDBD(w, b, distance_as_normalizer=False).fit(features=np.zeros((1, 2)))
    assert by_norm(None, features=x) == pytest.approx([-(2 + 1 / np.sqrt(2)) / np.sqrt(5)])
    assert "||x - mean of 2 training videos||" in fdbd.describe()
    with pytest.raises(ValueError, match="classifier rows 0 and 2 are identical"):
        FDBD(np.array([[1.0, 0], [0, 1], [1, 0]]), b)


def _openood_fdbd(train_x, x, w, b, distance_as_normalizer):
    """OpenOOD `fdbd_postprocessor.py`: denominator[p, j] = ||w_j - w_p|| (1 on the diagonal),
    confidence sum_j |z_j - z_max| / denominator[pred, j] / ||x - train mean|| (or ||x||)."""
    k = w.shape[0]
    denominator = np.ones((k, k))
    for p in range(k):
        d = np.linalg.norm(w - w[p], axis=1)
        d[p] = 1
        denominator[p] = d
    z = x @ w.T + b
    pred = z.argmax(1)
    num = np.sum(np.abs(z - z.max(1, keepdims=True)) / denominator[pred], axis=1)
    return num / np.linalg.norm(x - train_x.mean(0) if distance_as_normalizer else x, axis=1)


@pytest.mark.parametrize("distance_as_normalizer", [True, False])
def test_fdbd_is_minus_openoods_confidence(distance_as_normalizer):
    fdbd = create_score("fdbd", weight=W, bias=B, distance_as_normalizer=distance_as_normalizer)
    fdbd.fit(features=TRAIN_X)
    np.testing.assert_allclose(fdbd(None, features=QUERY),
                               -_openood_fdbd(TRAIN_X, QUERY, W, B, distance_as_normalizer), rtol=1e-10)


def test_nnguide_weighs_the_energy_by_the_mean_top_k_guided_similarity():
    # bank: e1 with train energy confidence log 2 (logits (0, 0)), e2 with log 4 (logits (log 3, 0))
    bank_x = np.array([[1.0, 0.0], [0.0, 2.0]])
    bank_z = np.array([[0.0, 0.0], [np.log(3.0), 0.0]])
    q, qz = np.array([[3.0, 4.0]]), np.array([[0.0, np.log(3.0)]])  # q / |q| = (0.6, 0.8); confidence log 4
    ln2 = np.log(2.0)
    # inner products with the guided bank: 0.6 log 2 and 0.8 * 2 log 2
    one = NNGuide(k=1).fit(logits=bank_z, features=bank_x)
    assert one(qz, features=q) == pytest.approx([-1.6 * ln2 * 2 * ln2])
    two = NNGuide(k=2).fit(logits=bank_z, features=bank_x)
    assert two(qz, features=q) == pytest.approx([-1.1 * ln2 * 2 * ln2])
    assert NNGuide(k=100).fit(logits=bank_z, features=bank_x)(qz, features=q) == two(qz, features=q)  # capped
    # a training video is not its own neighbour: each sees only the other
    loo = one(bank_z, features=bank_x, leave_one_out=True)
    np.testing.assert_allclose(loo, [-0.0 * ln2, -0.0 * 2 * ln2], atol=1e-12)
    assert create_score("nnguide").k == 100  # configs/postprocessors/nnguide.yml


def _openood_nnguide(train_x, train_z, x, z, k):
    """OpenOOD `nnguide_postprocessor.py` (alpha = 1: the whole bank): normalised train features
    times logsumexp(train logits), inner products of the normalised query, mean of the top k,
    times the query's logsumexp (its `normalizer` adds 1e-10 after dividing)."""
    normalise = lambda a: a / np.linalg.norm(a, axis=-1, keepdims=True) + 1e-10  # noqa: E731
    guide = normalise(train_x) * logsumexp(train_z, axis=-1)[:, None]
    sims = normalise(x) @ guide.T
    return np.sort(sims, axis=1)[:, ::-1][:, :k].mean(1) * logsumexp(z, axis=-1)


def test_nnguide_is_minus_openoods_confidence():
    train_z, z = TRAIN_X @ W.T + B, QUERY @ W.T + B
    nng = NNGuide(k=5).fit(logits=train_z, features=TRAIN_X)
    np.testing.assert_allclose(nng(z, features=QUERY), -_openood_nnguide(TRAIN_X, train_z, QUERY, z, 5),
                               rtol=1e-6, atol=1e-8)


def test_nnguide_bank_fraction_draws_a_seeded_subset_and_leaves_its_own_row_out():
    train_z = TRAIN_X @ W.T + B
    half = NNGuide(k=3, bank_fraction=0.5, seed=1).fit(logits=train_z, features=TRAIN_X)
    assert half.bank.shape == (15, F) and np.array_equal(
        half.index, NNGuide(bank_fraction=0.5, seed=1).fit(logits=train_z, features=TRAIN_X).index)
    loo = half(train_z, features=TRAIN_X, leave_one_out=True)
    inside = half.index[0]  # a bank video: its score equals scoring it against the bank without itself
    rest = NNGuide(k=3).fit(logits=train_z[np.setdiff1d(half.index, [inside])],
                            features=TRAIN_X[np.setdiff1d(half.index, [inside])])
    assert loo[inside] == pytest.approx(rest(train_z[[inside]], features=TRAIN_X[[inside]])[0])
    outside = np.setdiff1d(np.arange(30), half.index)[0]  # not in the bank: the whole bank
    assert loo[outside] == pytest.approx(half(train_z[[outside]], features=TRAIN_X[[outside]])[0])
    assert "bank of 15 of 30 training videos" in half.describe()


def test_she_uses_the_mean_of_the_correctly_classified_videos_of_the_predicted_class():
    x = np.array([[2.0, 0], [4, 0], [0, 1], [0, 2]])
    labels = np.array([0, 0, 0, 1])
    logits = np.array([[1.0, 0], [1, 0], [0, 1], [0, 1]])  # the third is wrong: left out
    she = SHE().fit(logits=logits, labels=labels, features=x)
    np.testing.assert_allclose(she.patterns, [[3.0, 0.0], [0.0, 2.0]])
    q, qz = np.array([[1.0, 1.0], [1.0, 1.0]]), np.array([[2.0, 0.0], [0.0, 2.0]])
    np.testing.assert_allclose(she(qz, features=q), [-3.0, -2.0])  # inner product with (3,0) / (0,2)
    np.testing.assert_allclose(SHE(metric="euclidean").fit(logits=logits, labels=labels, features=x)(qz, features=q),
                               [np.sqrt(5.0), np.sqrt(2.0)])
    np.testing.assert_allclose(SHE(metric="cosine").fit(logits=logits, labels=labels, features=x)(qz, features=q),
                               [-1 / np.sqrt(2)] * 2)
    with pytest.raises(ValueError, match="no correctly classified training video of class\\(es\\) \\[1\\]"):
        SHE().fit(logits=logits[:3], labels=labels[:3], features=x[:3])


def _openood_she(train_x, train_y, train_z, x, z, k):
    """OpenOOD `she_postprocessor.py`: per class the mean feature of the training samples with
    label == pred == c; confidence: inner product of the feature with its predicted class's."""
    pred = train_z.argmax(1)
    patterns = np.stack([train_x[(train_y == c) & (pred == c)].mean(0) for c in range(k)])
    return np.sum(x * patterns[z.argmax(1)], axis=1)


def test_she_is_minus_openoods_confidence():
    train_z, z = TRAIN_X @ W.T + B, QUERY @ W.T + B
    she = create_score("she").fit(logits=train_z, labels=TRAIN_Y, features=TRAIN_X)
    np.testing.assert_allclose(she(z, features=QUERY), -_openood_she(TRAIN_X, TRAIN_Y, train_z, QUERY, z, K),
                               rtol=1e-10)
