import numpy as np
import pytest
from sklearn.metrics import balanced_accuracy_score, top_k_accuracy_score

from dear_ray.metrics import closed_set_accuracy, open_set_confusion_matrix
from dear_ray.metrics.closed import confusion_of_decisions, mean_class_accuracy


@pytest.mark.parametrize("seed", range(5))
def test_accuracies_match_sklearn(seed):
    rng = np.random.default_rng(seed)
    k = 12
    labels = rng.integers(0, k, 200)
    logits = rng.normal(size=(200, k)) + 2.0 * np.eye(k)[labels]
    preds = logits.argmax(1)
    out = closed_set_accuracy(labels, preds, logits)
    assert out["top1"] == pytest.approx(np.mean(preds == labels))
    assert out["top5"] == pytest.approx(top_k_accuracy_score(labels, logits, k=5, labels=np.arange(k)))
    assert closed_set_accuracy(labels, preds, mean_class="balanced")["mean_class_acc"] == pytest.approx(
        balanced_accuracy_score(labels, preds))


def test_mean_class_accuracy_hand_computed_and_top5_absent_without_logits():
    out = closed_set_accuracy([0, 0, 0, 0, 2], [0, 0, 0, 1, 1])
    assert out["top1"] == pytest.approx(0.6)
    # MMAction2 0.x mean_class_accuracy: the confusion matrix over the union {0, 1, 2} of true and
    # predicted classes; class 1 has no true sample and counts 0: (3/4 + 0 + 0) / 3
    assert out["mean_class_acc"] == pytest.approx(0.25)
    assert mean_class_accuracy([0, 0, 0, 0, 2], [0, 0, 0, 1, 1], form="balanced") == pytest.approx((3 / 4 + 0) / 2)
    assert np.isnan(out["top5"])
    assert closed_set_accuracy([0, 1], [1, 1], np.array([[0.0, 1.0, 0.5], [0.0, 1.0, 0.5]]))["top5"] == 1.0
    with pytest.raises(ValueError, match="mean class accuracy form 'macro'"):
        mean_class_accuracy([0], [0], form="macro")


def test_mean_class_accuracy_counts_a_class_only_predicted_as_zero():
    # truth {0, 1}, predicted also 3 (e.g. OpenMax's unknown class K = 3): union {0, 1, 3}
    labels, preds = [0, 0, 1, 1], [0, 3, 1, 1]
    assert mean_class_accuracy(labels, preds) == pytest.approx((1 / 2 + 1 + 0) / 3)


def test_open_set_confusion_matrix_hand_computed():
    cm = open_set_confusion_matrix(known_labels=[0, 1, 1], known_preds=[0, 0, 1], known_scores=[0.1, 0.2, 0.9],
                                   unknown_preds=[1, 0], unknown_scores=[0.3, 0.8], threshold=0.5, num_known=2)
    np.testing.assert_array_equal(cm, [[1, 0, 0], [1, 0, 1], [0, 1, 1]])


def test_confusion_of_decisions_hand_computed():
    cm = confusion_of_decisions([0, 1, 1], [0, 2, 1], [2, 0], num_known=2)
    np.testing.assert_array_equal(cm, [[1, 0, 0], [0, 1, 1], [1, 0, 1]])


def test_bad_inputs():
    with pytest.raises(ValueError, match="mismatched lengths: labels=2, preds=3"):
        closed_set_accuracy([0, 1], [0, 1, 1])
    with pytest.raises(ValueError, match=r"topk_logits: expected shape \(2, K\)"):
        closed_set_accuracy([0, 1], [0, 1], np.zeros((3, 4)))
    with pytest.raises(ValueError, match=r"labels: class id 4 outside \[0, 4\)"):
        closed_set_accuracy([0, 4], [0, 1], np.zeros((2, 4)))
    with pytest.raises(ValueError, match=r"known_labels: class id 2 outside \[0, 2\)"):
        open_set_confusion_matrix([2], [0], [0.1], [], [], 0.5, num_known=2)
    with pytest.raises(ValueError, match="labels: expected integer class ids"):
        closed_set_accuracy([0.5, 1.0], [0, 1])
