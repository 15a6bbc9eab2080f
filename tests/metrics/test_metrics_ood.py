import numpy as np
import pytest
from sklearn.metrics import auc, average_precision_score, precision_recall_curve, roc_auc_score, roc_curve

from dear_ray.metrics import binarized_auc, ood_metrics, open_auc, openness, threshold_from_train
from dear_ray.metrics.ood import binarized_auc_of_decisions


def test_openness_hand_computed():
    assert openness(101, 0) == 0.0
    assert openness(101, 51) == pytest.approx(1 - np.sqrt(202 / 253))
    np.testing.assert_allclose(openness(2, np.array([0, 4])), [0.0, 1 - np.sqrt(0.5)])
    with pytest.raises(ValueError, match="num_known=0"):
        openness(0, 3)


def test_threshold_get_threshold_rank_is_edl_and_bald_rank():
    # experiments/get_threshold.py: desc[N - int(0.95 N) - 1]. N = 100: the 5th largest;
    # N = 10: desc[10 - 9 - 1] = the largest
    scores = np.random.default_rng(0).permutation(np.arange(100.0))
    assert threshold_from_train(scores) == 95.0
    assert np.mean(scores > threshold_from_train(scores)) == pytest.approx(0.04)
    assert threshold_from_train(np.arange(10.0)) == 9.0
    assert threshold_from_train(np.arange(10.0), accept=0.5) == 5.0  # 5th largest
    with pytest.raises(ValueError, match="accept=1.5"):
        threshold_from_train(scores, accept=1.5)
    with pytest.raises(ValueError, match="train_scores: 1 NaN"):
        threshold_from_train([0.1, np.nan])
    with pytest.raises(ValueError, match="threshold rank 'median'"):
        threshold_from_train(scores, rank="median")


def test_threshold_baseline_softmax_rank_by_hand():
    """baseline_softmax.py / baseline_rpl.py: confidences c sorted DESCENDING, thr_c =
    desc_c[int(0.95 N) - 1], reject c < thr_c. With u = 1 - c: thr_u = 1 - thr_c, reject u > thr_u."""
    conf = np.array([0.99, 0.3, 0.95, 0.6, 0.9, 0.8, 0.7, 0.85, 0.5, 0.4,
                     0.97, 0.93, 0.91, 0.88, 0.86, 0.82, 0.75, 0.65, 0.55, 0.45])  # N = 20
    n = conf.size
    desc_c = np.sort(conf)[::-1]
    thr_c = desc_c[int(n * 0.95) - 1]  # desc_c[18] = 0.4, the second smallest confidence
    assert thr_c == 0.4
    u = 1.0 - conf
    thr_u = threshold_from_train(u, rank="baseline_softmax")
    assert thr_u == pytest.approx(1 - 0.4)
    np.testing.assert_array_equal(u > thr_u, conf < thr_c)  # the same videos rejected: 1 of 20
    # the EDL/BALD rank lands one rank higher: desc_u[20 - 19 - 1] = the largest u, nothing rejected
    assert threshold_from_train(u) == pytest.approx(1 - 0.3)
    assert np.sum(u > threshold_from_train(u)) == 0 and np.sum(u > thr_u) == 1


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
    assert m["aupr_out_ap"] == pytest.approx(average_precision_score(y, s), abs=1e-15)
    assert m["aupr_in_ap"] == pytest.approx(average_precision_score(1 - y, -s), abs=1e-15)
    precision, recall, _ = precision_recall_curve(y, s)
    assert m["aupr_out_trapz"] == pytest.approx(auc(recall, precision), abs=1e-15)
    assert m["fpr_at_95_tpr_first"] == pytest.approx(_fpr95_brute(known, unknown), abs=1e-15)
    fpr, tpr, _ = roc_curve(y, s)
    assert m["fpr_at_95_tpr_nearest"] == fpr[np.argmin(np.abs(tpr - 0.95))]


def test_fpr95_and_aupr_conventions_by_hand_with_ties():
    """One tied case worked by hand. Unknown (positive) scores: 0.9, 0.9, 0.5, 0.5;
    known: 0.9, 0.5, 0.1, 0.1, 0.1."""
    known, unknown = np.array([0.9, 0.5, 0.1, 0.1, 0.1]), np.array([0.9, 0.9, 0.5, 0.5])
    m = ood_metrics(known, unknown)
    # thresholds 0.9 / 0.5 / 0.1: (TP, FP) = (2, 1), (4, 2), (4, 5); TPR 0.5, 1, 1; FPR 0.2, 0.4, 1
    # first rule: the first threshold with TPR >= 0.95 is 0.5 -> FPR 0.4
    assert m["fpr_at_95_tpr_first"] == pytest.approx(0.4)
    # DEAR: argmin |TPR - 0.95| over (0,0), (0.2,0.5), (0.4,1), (1,1) -> |1 - 0.95| first at FPR 0.4
    assert m["fpr_at_95_tpr_nearest"] == pytest.approx(0.4)
    # AP: sum dR * P = 0.5 * 2/3 + 0.5 * 4/6 = 2/3
    assert m["aupr_out_ap"] == pytest.approx(2 / 3)
    # trapezoids from (R 0, P 1): (0,1)-(0.5,2/3)-(1,2/3)-(1,4/9)
    assert m["aupr_out_trapz"] == pytest.approx(0.5 * (1 + 2 / 3) / 2 + 0.5 * (2 / 3))
    # AUROC: P(u > k) + 0.5 P(tie) = (2 * (4 + 0.5) + 2 * (3 + 0.5)) / 20
    assert m["auroc"] == pytest.approx((2 * 4.5 + 2 * 3.5) / 20)


def test_fpr95_nearest_differs_from_first_where_the_nearest_tpr_is_below():
    # 20 unknown at 1..20, 10 known at 0.5 + 10..19: TPR steps of 0.05; the nearest point to 0.95
    # is TPR 0.95 exactly, the first rule agrees; shift one unknown below every known to split them
    unknown = np.r_[np.arange(2.0, 21.0), -1.0]  # 19 high, 1 lowest
    known = np.arange(10.0) + 0.5  # 0.5 .. 9.5
    m = ood_metrics(known, unknown)
    # TPR reaches 19/20 = 0.95 at threshold 2 (FPR = known >= 2: 8/10); first rule: 0.95 >= 0.95
    assert m["fpr_at_95_tpr_first"] == pytest.approx(0.8)
    assert m["fpr_at_95_tpr_nearest"] == pytest.approx(0.8)
    m90 = ood_metrics(known, unknown, tpr=0.93)
    # first: TPR >= 0.93 -> 0.95 at FPR 0.8; nearest |TPR - 0.93|: 0.95 (0.02) vs 0.90 (0.03)
    assert m90["fpr_at_95_tpr_first"] == pytest.approx(0.8)
    m97 = ood_metrics(known, unknown, tpr=0.97)
    # first: TPR >= 0.97 only at 1.0 (FPR 1); nearest: 0.95 (0.02) beats 1.0 (0.03) -> FPR 0.8
    assert m97["fpr_at_95_tpr_first"] == pytest.approx(1.0)
    assert m97["fpr_at_95_tpr_nearest"] == pytest.approx(0.8)


def test_binarized_auc_is_balanced_accuracy_at_the_threshold():
    known = np.array([0.1, 0.2, 0.6, 0.3])  # 1 of 4 rejected
    unknown = np.array([0.7, 0.9, 0.2])  # 2 of 3 rejected
    assert binarized_auc(known, unknown, 0.5) == pytest.approx(0.5 * (3 / 4 + 2 / 3))
    assert binarized_auc(known, unknown, 0.6) == pytest.approx(0.5 * (4 / 4 + 2 / 3))  # > thr, not >=


def test_binarized_auc_of_decisions_is_balanced_accuracy():
    known = np.array([False, False, True, False])  # 1 of 4 known rejected
    unknown = np.array([True, True, False])  # 2 of 3 unknown rejected
    assert binarized_auc_of_decisions(known, unknown) == pytest.approx(0.5 * (3 / 4 + 2 / 3))


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
