import dataclasses

import numpy as np
import pytest

from dear_ray.metrics import (
    METRIC_KEYS,
    binarized_auc,
    closed_set_accuracy,
    combine_unknown_classes,
    draw_unknown_subsets,
    ece,
    ood_metrics,
    open_auc,
    open_macro_f1,
    open_set_f1_curve,
    open_set_report,
    threshold_from_train,
)
from dear_ray.scores import StoreMeta, read_score_store


def _load(paths):
    return {split: read_score_store(p) for split, p in paths.items()}


def test_report_row_equals_the_individual_metrics(make_stores):
    s = _load(make_stores(head="softmax"))
    subsets = draw_unknown_subsets(s["unknown"].labels, num_trials=3, seed=7)
    rep = open_set_report(train=s["train"], known=s["test"], unknown=s["unknown"], shifted=s["test_shifted"],
                          score="msp", subsets=subsets)
    m = rep.metrics
    assert list(m) == list(METRIC_KEYS)
    thr = threshold_from_train(s["train"].score("msp"))
    ks, us = s["test"].score("msp"), s["unknown"].score("msp")
    closed = closed_set_accuracy(s["test"].labels, s["test"].preds, s["test"].logits)
    curve = open_set_f1_curve(s["test"].labels, s["test"].preds, ks, s["unknown"].labels, s["unknown"].preds, us,
                              thr, subsets=subsets, num_known=4)
    expected = {
        "closed_top1": closed["top1"], "closed_top5": closed["top5"], "closed_mean_class_acc": closed["mean_class_acc"],
        "open_maf1": open_macro_f1(curve), "binarized_auc": binarized_auc(ks, us, thr), **ood_metrics(ks, us),
        "open_auc": open_auc(s["test"].labels, s["test"].preds, ks, us),
        "ece": ece(1 - ks, s["test"].preds == s["test"].labels), "threshold": thr,
        "shifted_top1": np.mean(s["test_shifted"].preds == s["test_shifted"].labels),
    }
    expected["static_bias_gap"] = expected["closed_top1"] - expected["shifted_top1"]
    for key, value in expected.items():
        assert m[key] == pytest.approx(value, abs=1e-12), key
    assert 0.0 < m["open_maf1"] < 1.0 and m["auroc"] > 0.8  # the unknowns are far from the clusters
    assert rep.confusion.shape == (5, 5) and rep.confusion.sum() == len(s["test"]) + len(s["unknown"])


def test_non_probability_scores_use_the_msp_for_ece_and_no_shift_keys(make_stores):
    s = _load(make_stores(head="softmax", shifted=False))
    rep = open_set_report(train=s["train"], known=s["test"], unknown=[s["unknown"]], score="energy", num_trials=2)
    probs = np.exp(s["test"].logits - s["test"].logits.max(1, keepdims=True))
    msp = (probs / probs.sum(1, keepdims=True)).max(1)
    assert rep.metrics["ece"] == pytest.approx(ece(msp, s["test"].preds == s["test"].labels))
    assert "shifted_top1" not in rep.metrics and "static_bias_gap" not in rep.metrics


def test_two_unknown_data_sets_get_distinct_class_ids(make_stores):
    s = _load(make_stores())
    other = dataclasses.replace(s["unknown"], meta=dataclasses.replace(s["unknown"].meta, dataset="mit"))
    np.testing.assert_array_equal(np.unique(combine_unknown_classes([s["unknown"], other])),
                                  [3, 8, 11, 15, 20, 23])
    rep = open_set_report(train=s["train"], known=s["test"], unknown=[s["unknown"], other], score="msp",
                          num_trials=2)
    assert rep.curve.num_unknown_classes[-1] == 6


def test_mismatched_stores_raise(make_stores, tmp_path):
    s = _load(make_stores(run="a"))
    b = _load(make_stores(run="b", seed=1))
    with pytest.raises(ValueError, match="belongs to run 'b'.*run 'a'"):
        open_set_report(train=s["train"], known=b["test"], unknown=s["unknown"], score="msp")
    with pytest.raises(ValueError, match="split 'unknown' given where train was expected"):
        open_set_report(train=s["unknown"], known=s["test"], unknown=s["unknown"], score="msp")
    wrong_k = dataclasses.replace(s["test"], meta=StoreMeta(split="test", dataset="synth", num_known=5,
                                                            head="softmax", checkpoint="a.pt", run="a"))
    with pytest.raises(ValueError, match="num_known=5, but the train store .* has num_known=4"):
        open_set_report(train=s["train"], known=wrong_k, unknown=s["unknown"], score="msp")
    with pytest.raises(KeyError, match="no score 'vacuity'"):
        open_set_report(train=s["train"], known=s["test"], unknown=s["unknown"], score="vacuity")
