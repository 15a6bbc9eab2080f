import numpy as np
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score

from dear_ray.metrics import binarized_auc, ood_metrics, open_auc, openness, threshold_from_train


def test_openness_hand_computed():
    assert openness(101, 0) == 0.0
    assert openness(101, 51) == pytest.approx(1 - np.sqrt(202 / 253))
    np.testing.assert_allclose(openness(2, np.array([0, 4])), [0.0, 1 - np.sqrt(0.5)])
    with pytest.raises(ValueError, match="num_known=0"):
        openness(0, 3)


def test_threshold_is_deAR_rank():
    # N = 100: the (100 - 95) = 5th largest; N = 10: the (10 - 9) = 1st largest (max)
    scores = np.random.default_rng(0).permutation(np.arange(100.0))
    assert threshold_from_train(scores) == 95.0
    assert np.mean(scores > threshold_from_train(scores)) == pytest.approx(0.04)
    assert threshold_from_train(np.arange(10.0)) == 9.0
    assert threshold_from_train(np.arange(10.0), accept=0.5) == 5.0  # 5th largest
    with pytest.raises(ValueError, match="accept=1.5"):
        threshold_from_train(scores, accept=1.5)
    with pytest.raises(ValueError, match="train_scores: 1 NaN"):
        threshold_from_train([0.1, np.nan])


def _fpr95_brute(known, unknown):
    t = np.sort(unknown)[::-1][int(np.ceil(0.95 * unknown.size)) - 1]  # flags >= 95% of unknowns
    return np.mean(known >= t)


@pytest.mark.parametrize("seed", range(8))
def test_ood_metrics_match_sklearn_and_brute_force(seed):
    rng = np.random.default_rng(seed)
    known = rng.normal(size=rng.integers(5, 200))
    unknown = rng.normal(0.7, 1.0, size=rng.integers(5, 200))
    if seed % 2:  # ties
        known, unknown = np.round(known, 1), np.round(unknown, 1)
    y = np.r_[np.zeros(known.size), np.ones(unknown.size)]
    s = np.r_[known, unknown]
    m = ood_metrics(known, unknown)
    assert m["auroc"] == pytest.approx(roc_auc_score(y, s), abs=1e-15)
    assert m["aupr_out"] == pytest.approx(average_precision_score(y, s), abs=1e-15)
    assert m["aupr_in"] == pytest.approx(average_precision_score(1 - y, -s), abs=1e-15)
    assert m["fpr_at_95_tpr"] == pytest.approx(_fpr95_brute(known, unknown), abs=1e-15)


def test_binarized_auc_is_balanced_accuracy_at_the_threshold():
    known = np.array([0.1, 0.2, 0.6, 0.3])  # 1 of 4 rejected
    unknown = np.array([0.7, 0.9, 0.2])  # 2 of 3 rejected
    assert binarized_auc(known, unknown, 0.5) == pytest.approx(0.5 * (3 / 4 + 2 / 3))
    assert binarized_auc(known, unknown, 0.6) == pytest.approx(0.5 * (4 / 4 + 2 / 3))  # > thr, not >=


def test_open_auc_brute_force():
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 4, 60)
    preds = np.where(rng.random(60) < 0.7, labels, rng.integers(0, 4, 60))
    known = np.round(rng.random(60), 1)
    unknown = np.round(rng.random(40) + 0.2, 1)
    ok = preds == labels
    wins = (known[ok, None] < unknown[None]).sum() + 0.5 * (known[ok, None] == unknown[None]).sum()
    assert open_auc(labels, preds, known, unknown) == pytest.approx(wins / (60 * 40), abs=1e-15)
    # all known correct: OpenAUC is the AUROC
    assert open_auc(labels, labels, known, unknown) == pytest.approx(ood_metrics(known, unknown)["auroc"])


def test_bad_inputs_name_the_argument():
    with pytest.raises(ValueError, match="unknown_scores: 1 NaN"):
        ood_metrics([0.1, 0.2], [np.nan, 0.3])
    with pytest.raises(ValueError, match="known_scores: expected a 1-D"):
        ood_metrics(np.zeros((2, 2)), [0.3])
    with pytest.raises(ValueError, match="known_scores: is empty"):
        binarized_auc([], [0.3], 0.1)
    with pytest.raises(ValueError, match="mismatched lengths: known_labels=3, known_preds=2, known_scores=3"):
        open_auc([0, 1, 2], [0, 1], [0.1, 0.2, 0.3], [0.5])
    with pytest.raises(ValueError, match="known_labels: negative class id -1"):
        open_auc([0, -1], [0, 1], [0.1, 0.2], [0.5])
