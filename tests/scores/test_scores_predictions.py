"""Closed-set predictions as DEAR's scripts make them (dear_ray.scores.predictions)."""

import dataclasses

import numpy as np
import pytest

from dear_ray.scores import (
    ScoreStore,
    StoreMeta,
    class_probabilities,
    closed_predictions,
    default_prediction_rule,
)


def _store(logits, sample_logits=None, head="edl"):
    logits = np.asarray(logits, dtype=np.float32)
    n = len(logits)
    meta = StoreMeta(split="test", dataset="synth", num_known=logits.shape[1], head=head, checkpoint="c", run="r")
    return ScoreStore(path=None, meta=meta, video_ids=np.array([str(i) for i in range(n)], dtype=object),
                      labels=np.zeros(n, dtype=np.int64), preds=logits.argmax(1), logits=logits, features=None,
                      sample_logits=None if sample_logits is None else np.asarray(sample_logits, np.float32),
                      scores={})


def test_dirichlet_prediction_takes_the_first_index_of_clamped_ties():
    # exp evidence clamps logits at 10: 11 and 12 both give alpha = e^10 + 1, a tie -> index 0
    # (ood_detection.py: argmax of alpha / S), where the logits' argmax is 1
    store = _store([[11.0, 12.0, 0.0], [0.0, 3.0, 1.0]])
    np.testing.assert_array_equal(store.preds, [1, 1])
    np.testing.assert_array_equal(closed_predictions(store, "dirichlet"), [0, 1])
    alpha = np.exp(np.clip(store.logits.astype(np.float64), -10, 10)) + 1
    np.testing.assert_allclose(class_probabilities(store, "dirichlet"), alpha / alpha.sum(1, keepdims=True))


def test_mean_passes_prediction_is_the_argmax_of_the_mean_probability():
    # two passes: softmax p1 = [0.73, 0.27], p2 = [0.0003, 0.9997] -> mean [0.365, 0.635] -> class 1,
    # while the deterministic logits say class 0 and the mean of the pass logits [-1.5, 0] also 1
    passes = np.array([[[1.0, 0.0]], [[-4.0, 4.0]]])
    store = _store([[2.0, 0.0]], sample_logits=passes, head="softmax")
    p = np.exp(passes) / np.exp(passes).sum(-1, keepdims=True)
    np.testing.assert_allclose(class_probabilities(store, "mean_passes"), p.mean(0))
    assert closed_predictions(store, "mean_passes")[0] == 1 and closed_predictions(store, "logits")[0] == 0
    # the mean of probabilities and of logits disagree: passes [0, 10] and 3x [1, 0] have mean logits
    # [0.75, 2.5] (class 1) but mean probabilities [0.548, 0.452] (class 0)
    passes = np.array([[[0.0, 10.0]], [[1.0, 0.0]], [[1.0, 0.0]], [[1.0, 0.0]]])
    store = dataclasses.replace(store, sample_logits=passes.astype(np.float32))
    assert passes.mean(0).argmax() == 1 and closed_predictions(store, "mean_passes")[0] == 0
    with pytest.raises(ValueError, match="'mean_passes' needs sample_logits"):
        closed_predictions(_store([[1.0, 0.0]], head="softmax"), "mean_passes")
    with pytest.raises(ValueError, match="prediction rule 'vote'"):
        closed_predictions(store, "vote")


def test_default_rules_follow_dear():
    assert default_prediction_rule("dear", "vacuity") == "dirichlet"
    assert default_prediction_rule("edl", "msp") == "dirichlet"
    assert default_prediction_rule("softmax", "bald") == "mean_passes"
    assert default_prediction_rule("bnn", "bald") == "mean_passes"
    assert default_prediction_rule("softmax", "msp") == "logits"
    assert default_prediction_rule("rpl", "rpl") == "logits"
