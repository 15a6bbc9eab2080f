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
from dear_ray.metrics.static_bias import STATIC_BIAS_KEYS
from dear_ray.scores import StoreMeta, read_score_store


def _load(paths):
    return {split: read_score_store(p) for split, p in paths.items()}


def test_report_row_equals_the_individual_metrics(make_stores):
    s = _load(make_stores(head="softmax"))
    subsets = draw_unknown_subsets(s["unknown"].labels, num_trials=3, seed=7)
    rep = open_set_report(train=s["train"], known=s["test"], unknown=s["unknown"], shifted=s["test_shifted"],
                          score="msp", subsets=subsets)
    m = rep.metrics
    # no test_scuba / test_scufo stores: no static-bias metrics (tests/metrics/test_static_bias.py)
    assert list(m) == [k for k in METRIC_KEYS if k not in STATIC_BIAS_KEYS] and rep.unknown_set == "hmdb"
    thr = threshold_from_train(s["train"].score("msp"), rank="baseline_softmax")  # msp: DEAR's softmax rank
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


def test_threshold_rank_follows_the_score(make_stores):
    soft = _load(make_stores(head="softmax"))
    for score, rank in (("msp", "baseline_softmax"), ("bald", "get_threshold"), ("energy", "get_threshold")):
        rep = open_set_report(train=soft["train"], known=soft["test"], unknown=soft["unknown"], score=score,
                              num_trials=2, threshold_print="exact")
        assert rep.metrics["threshold"] == threshold_from_train(soft["train"].score(score), rank=rank), score
    dear = _load(make_stores(head="dear", run="d"))
    rep = open_set_report(train=dear["train"], known=dear["test"], unknown=dear["unknown"], score="msp", num_trials=2,
                          threshold_print="exact")
    assert rep.metrics["threshold"] == threshold_from_train(dear["train"].score("msp"))  # evidential: get_threshold
    n = len(soft["train"])  # 120: the softmax rank is asc[113], get_threshold's asc[114]
    u = np.sort(soft["train"].score("msp"))
    assert threshold_from_train(u, rank="baseline_softmax") == u[int(n * 0.95) - 1] != u[int(n * 0.95)]


def _openmax_store(meta_split, labels, logits, run="om"):
    from dear_ray.scores import ScoreStore
    meta = StoreMeta(split=meta_split, dataset="unk" if meta_split == "unknown" else "synth", num_known=2,
                     head="softmax", checkpoint="om.pt", run=run)
    logits = np.asarray(logits, dtype=np.float32)
    return ScoreStore(path=None, meta=meta, video_ids=np.array([f"{meta_split}{i}" for i in range(len(labels))],
                                                                   dtype=object),
                      labels=np.asarray(labels), preds=logits.argmax(1), logits=logits, features=None,
                      sample_logits=None, scores={"openmax": np.asarray(logits[:, 0] * 0 + 0.1, dtype=np.float64)})


def test_openmax_decides_by_the_argmax_over_k_plus_1_without_threshold():
    """DEAR baseline_openmax.py: preds = argmax over K+1 (K = unknown). Hand case with K = 2:
    known truth [0, 0, 1, 1] decided [0, 2, 1, 0]; unknown decided [2, 2, 1]."""
    decisions = {"train": [0, 1, 0, 1], "test": [0, 2, 1, 0], "unknown": [2, 2, 1]}
    stores = {"train": _openmax_store("train", [0, 1, 0, 1], [[2, 0], [0, 2], [2, 0], [0, 2]]),
              "test": _openmax_store("test", [0, 0, 1, 1], [[2, 0], [2, 0], [0, 2], [2, 0]]),
              "unknown": _openmax_store("unknown", [0, 1, 1], [[2, 0], [2, 0], [0, 2]])}
    stores = {k: dataclasses.replace(v, scores={"openmax": np.array(p, dtype=np.float64)})
              for (k, v), p in zip(stores.items(), ([0.1, 0.2, 0.1, 0.3], [0.1, 0.9, 0.2, 0.4], [0.8, 0.7, 0.3]))}
    by_split = {id(st): np.array(decisions[k]) for k, st in stores.items()}
    rep = open_set_report(train=stores["train"], known=stores["test"], unknown=stores["unknown"], score="openmax",
                          decide=lambda st: by_split[id(st)], subsets=[[np.array([0])], [np.array([0, 1])]])
    m = rep.metrics
    assert np.isnan(m["threshold"])
    # binarised AUC: known rejected 1/4, unknown rejected 2/3 -> 0.5 * (3/4 + 2/3)
    assert m["binarized_auc"] == pytest.approx(0.5 * (3 / 4 + 2 / 3))
    # closed-set accuracy from the K+1 decisions (the rejected known video counts wrong): 2/4
    assert m["closed_top1"] == pytest.approx(0.5)
    # mean class acc, MMAction2 over the union {0, 1, 2}: (1/2 + 1/2 + 0) / 3
    assert m["closed_mean_class_acc"] == pytest.approx(1 / 3)
    np.testing.assert_array_equal(rep.confusion, [[1, 0, 1], [1, 1, 0], [0, 1, 2]])
    # F1 at n = 2 (both unknown classes): truth [0,0,1,1,2,2,2], decided [0,2,1,0,2,2,1]
    from sklearn.metrics import f1_score
    f1_n2 = f1_score([0, 0, 1, 1, 2, 2, 2], [0, 2, 1, 0, 2, 2, 1], average="macro")
    assert rep.curve.f1_mean[2] == pytest.approx(f1_n2)
    # the threshold-free metrics still use P(unknown): AUROC of [0.1,0.9,0.2,0.4] vs [0.8,0.7,0.3]
    assert m["auroc"] == pytest.approx((3 + 3 + 2) / 12)


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
    assert rep.unknown_set == "all"  # merged: only ever under this explicit name


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


def test_evidential_and_mc_dropout_rows_predict_as_dear(make_stores):
    from scipy.special import softmax

    d = _load(make_stores(head="dear", run="d"))
    rep = open_set_report(train=d["train"], known=d["test"], unknown=d["unknown"], score="vacuity", num_trials=2)
    alpha = np.exp(np.clip(d["test"].logits.astype(np.float64), -10, 10)) + 1
    dirichlet = alpha.argmax(1)  # ood_detection.py: argmax of alpha / S, first index on ties
    assert rep.metrics["closed_top1"] == pytest.approx(np.mean(dirichlet == d["test"].labels))
    assert np.mean(dirichlet == d["test"].labels) != np.mean(d["test"].preds == d["test"].labels)
    s = _load(make_stores(head="softmax", run="s"))
    rep = open_set_report(train=s["train"], known=s["test"], unknown=s["unknown"], score="bald", num_trials=2)
    mean_p = softmax(s["test"].sample_logits.astype(np.float64), axis=-1).mean(0)
    assert rep.metrics["closed_top1"] == pytest.approx(np.mean(mean_p.argmax(1) == s["test"].labels))
