"""PSL's Mahalanobis score (Jun-CEN/PSL tools/compute_openness.py, clusters=1) by hand."""

import numpy as np
import pytest

from dear_ray.scores.psl import PSLMahalanobis, create_psl_score

# unit-norm training embeddings with per-dimension std 0.6 and 0.8 about a zero mean: after PSL's
# standardisation they are (+-1, +-1), whose biased covariance is the identity
TRAIN = np.array([[0.6, 0.8], [0.6, -0.8], [-0.6, 0.8], [-0.6, -0.8]])
TRAIN_LABELS = np.array([0, 0, 1, 1])


def _fit(train=TRAIN, labels=TRAIN_LABELS, **kw):
    return create_psl_score(**kw).fit(np.zeros((len(train), 3)), labels, train)


def test_psl_score_is_the_standardised_mahalanobis_distance():
    score = _fit()
    test = np.array([[1.0, 0.0], [0.0, 1.0], [3.0, 4.0]])  # (3, 4) is L2-normalised to (0.6, 0.8)
    u = score(np.zeros((3, 3)), features=test)
    # (x0 / 0.6)^2 + (x1 / 0.8)^2 of the unit vectors
    assert u == pytest.approx([1 / 0.36, 1 / 0.64, 2.0], rel=1e-6)
    assert u[0] > u[2]  # higher = more unknown: off the training spread scores higher


def test_psl_score_uses_the_pseudo_inverse_of_a_singular_covariance():
    # standardised training rows (1, 1) and (-1, -1): covariance [[1, 1], [1, 1]], pinv 0.25 * ones
    score = _fit(TRAIN[[0, 3]], TRAIN_LABELS[[0, 3]])
    u = score(np.zeros((2, 3)), features=np.array([[1.0, 0.0], [0.6, -0.8]]))
    # (1, 0) -> (5/3, 0): 0.25 * (5/3)^2; (0.6, -0.8) -> (1, -1) lies in the null space: 0
    assert u == pytest.approx([0.25 * (5 / 3) ** 2, 0.0], abs=1e-9)


def test_psl_score_per_class_takes_the_nearest_class():
    score = _fit(per_class=True)
    # class 0 standardised: (1, 1), (1, -1): mean (1, 0), covariance diag(0, 1); class 1 mirrored
    u = score(np.zeros((2, 3)), features=np.array([[1.0, 0.0], [0.0, 1.0]]))
    assert u == pytest.approx([0.0, 1.25 ** 2], abs=1e-9)


def test_psl_score_errors():
    with pytest.raises(ValueError, match="psl is not fitted"):
        PSLMahalanobis()(np.zeros((1, 3)), features=np.zeros((1, 2)))
    with pytest.raises(ValueError, match="psl.score: needs the psl head's embeddings"):
        _fit()(np.zeros((1, 3)))
    with pytest.raises(ValueError, match=r"psl was fitted on 2-d embeddings, got 3-d"):
        _fit()(np.zeros((1, 3)), features=np.ones((1, 3)))
    with pytest.raises(ValueError, match=r"psl.fit: labels must be \(4,\)"):
        create_psl_score().fit(np.zeros((4, 3)), np.zeros(3), TRAIN)
