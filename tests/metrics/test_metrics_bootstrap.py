"""The bootstrap intervals (dear_ray.metrics.bootstrap) against hand computations and sklearn."""

import numpy as np
import pytest
from sklearn.metrics import auc, average_precision_score, precision_recall_curve, roc_auc_score, roc_curve

from dear_ray.metrics import draw_unknown_subsets, ece, open_macro_f1, open_set_report
from dear_ray.metrics.bootstrap import (
    _ece,
    _indices,
    _mean_class_accuracy,
    bootstrap_report,
    open_maf1_resamples,
    paired_difference,
    percentile_interval,
    ranking_metrics,
)
from dear_ray.metrics.closed import mean_class_accuracy
from dear_ray.metrics.openset import open_set_f1_curve_from_decisions
from dear_ray.metrics.seeds import seed_summary, t_interval
from dear_ray.scores import read_score_store


def test_fixed_seed_bootstrap_of_top1_by_hand():
    """4 known videos, correct = [1, 0, 1, 1]; the resamples are numpy's integers(0, 4, (B, 4)) of
    default_rng([seed, crc32('known'), 4]); the interval is the 2.5/97.5 percentile of their means."""
    import zlib
    idx = _indices("known", 4, 5, seed=3)
    expected = np.random.default_rng([3, zlib.crc32(b"known"), 4]).integers(0, 4, size=(5, 4))
    np.testing.assert_array_equal(idx, expected)
    correct = np.array([1.0, 0.0, 1.0, 1.0])
    means = [np.mean([correct[i] for i in row]) for row in idx.tolist()]  # plain python
    low, high = percentile_interval(means)
    s = sorted(means)  # numpy's linear percentile on 5 values: position 0.025 * 4 = 0.1
    assert low == pytest.approx(s[0] + 0.1 * (s[1] - s[0]))
    assert high == pytest.approx(s[3] + 0.9 * (s[4] - s[3]))


def test_percentile_interval_hand_computed():
    assert percentile_interval([0.0, 1.0, 2.0, 3.0, 4.0], level=0.5) == (1.0, 3.0)
    assert percentile_interval([np.nan, 1.0, np.nan]) == (1.0, 1.0)
    assert all(np.isnan(percentile_interval([np.nan])))


@pytest.mark.parametrize("seed", range(6))
def test_ranking_metrics_equal_sklearn_on_each_resample(seed):
    rng = np.random.default_rng(seed)
    pos = np.round(rng.normal(0.6, 1, rng.integers(3, 40)), 1)  # ties
    neg = np.round(rng.normal(0, 1, rng.integers(3, 40)), 1)
    pi, ni = rng.integers(0, pos.size, (7, pos.size)), rng.integers(0, neg.size, (7, neg.size))
    got = ranking_metrics(pos, neg, pi, ni)
    for b in range(7):
        y = np.r_[np.ones(pos.size), np.zeros(neg.size)]
        s = np.r_[pos[pi[b]], neg[ni[b]]]
        assert got["auroc"][b] == pytest.approx(roc_auc_score(y, s), abs=1e-12)
        assert got["ap"][b] == pytest.approx(average_precision_score(y, s), abs=1e-12)
        precision, recall, _ = precision_recall_curve(y, s)
        assert got["trapz"][b] == pytest.approx(auc(recall, precision), abs=1e-12)
        fpr, tpr, _ = roc_curve(y, s, drop_intermediate=False)
        assert got["fpr_first"][b] == fpr[np.searchsorted(tpr, 0.95, side="left")]
        fpr, tpr, _ = roc_curve(y, s)  # DEAR's: the pruned curve
        assert got["fpr_nearest"][b] == fpr[np.argmin(np.abs(tpr - 0.95))], b


def test_closed_metrics_on_resamples_equal_the_metric_functions():
    rng = np.random.default_rng(0)
    labels, preds = rng.integers(0, 5, 40), rng.integers(0, 6, 40)  # 5 = a rejected prediction
    conf = rng.random(40)
    idx = rng.integers(0, 40, (6, 40))
    mca = _mean_class_accuracy(labels, preds, idx, "mmaction2")
    e = _ece(conf, preds == labels, idx)
    for b in range(6):
        assert mca[b] == pytest.approx(mean_class_accuracy(labels[idx[b]], preds[idx[b]]))
        assert e[b] == pytest.approx(ece(conf[idx[b]], (preds == labels)[idx[b]]))


def test_open_maf1_on_resamples_equals_the_curve_of_the_resampled_videos(make_stores):
    s = {k: read_score_store(p) for k, p in make_stores(head="softmax").items()}
    subsets = draw_unknown_subsets(s["unknown"].labels, num_trials=3, seed=1)
    rep = open_set_report(train=s["train"], known=s["test"], unknown=s["unknown"], score="msp", subsets=subsets)
    rng = np.random.default_rng(5)
    ki = rng.integers(0, len(rep.known_ids), (4, len(rep.known_ids)))
    ui = rng.integers(0, len(rep.unknown_ids), (4, len(rep.unknown_ids)))
    maf1, curve = open_maf1_resamples(rep, ki, ui, subsets)
    for b in range(4):
        c = open_set_f1_curve_from_decisions(rep.known_labels[ki[b]], rep.known_decisions[ki[b]],
                                             rep.unknown_classes[ui[b]], rep.unknown_decisions[ui[b]], num_known=4,
                                             subsets=subsets)
        assert maf1[b] == pytest.approx(open_macro_f1(c), abs=1e-12)
        np.testing.assert_allclose(curve[b], c.f1_mean, atol=1e-12)


def test_paired_bootstrap_of_two_methods_on_the_same_videos(make_stores):
    s = {k: read_score_store(p) for k, p in make_stores(head="softmax").items()}
    subsets = draw_unknown_subsets(s["unknown"].labels, num_trials=2, seed=0)
    msp = open_set_report(train=s["train"], known=s["test"], unknown=s["unknown"], score="msp", subsets=subsets,
                          shifted=s["test_shifted"])
    bald = open_set_report(train=s["train"], known=s["test"], unknown=s["unknown"], score="bald", subsets=subsets,
                           shifted=s["test_shifted"])
    a = bootstrap_report(msp, subsets, resamples=300, curve_resamples=50, seed=2)
    b = bootstrap_report(bald, subsets, resamples=300, curve_resamples=50, seed=2)
    assert a.values["open_maf1"].shape == (50,) and a.curve_f1.shape == (50, 4)
    # a metric against itself: every resampled difference is 0
    assert paired_difference(a, a, "auroc") == (0.0, 0.0)
    # the same videos are drawn for both: the difference interval is the percentile of differences
    low, high = paired_difference(b, a, "auroc")
    assert (low, high) == percentile_interval(b.values["auroc"] - a.values["auroc"])
    assert low <= bald.metrics["auroc"] - msp.metrics["auroc"] <= high
    lo, hi = a.interval("auroc")
    assert lo <= msp.metrics["auroc"] <= hi
    # a report on other videos is not paired
    other = bootstrap_report(msp, subsets, resamples=300, curve_resamples=50, seed=2)
    other.ids["unknown"] = other.ids["unknown"][:-1] + ("elsewhere",)
    assert paired_difference(other, a, "auroc") is None
    assert paired_difference(other, a, "closed_top1") == (0.0, 0.0)  # known videos still the same
    # fewer resamples (a post-hoc row's): its draws are the first of the baseline's, and pair with them
    few = bootstrap_report(bald, subsets, resamples=40, curve_resamples=10, seed=2)
    np.testing.assert_array_equal(few.values["auroc"], b.values["auroc"][:40])
    assert paired_difference(few, a, "auroc") == percentile_interval(b.values["auroc"][:40] - a.values["auroc"][:40])
    assert paired_difference(few, a, "open_maf1") == percentile_interval(few.values["open_maf1"]
                                                                          - a.values["open_maf1"][:10])


def test_t_interval_and_seed_summary_on_known_values():
    # values 0.6, 0.7, 0.8: mean 0.7, sd 0.1, t_{0.975, 2} = 4.302653 -> half-width 0.248414
    mean, low, high = t_interval([0.6, 0.7, 0.8])
    assert mean == pytest.approx(0.7)
    assert high - mean == pytest.approx(4.302653 * 0.1 / np.sqrt(3), rel=1e-6)
    import pandas as pd
    rows = []
    for seed, (soft, dear) in enumerate(((0.60, 0.70), (0.62, 0.71), (0.58, 0.69))):
        for method, score, head, value in (("softmax", "msp", "softmax", soft), ("dear", "vacuity", "dear", dear)):
            rows.append({"trial": f"{method}_seed-{seed}", "seed": seed, "method": method, "score": score,
                         "head": head, "known": "synth", "unknown_set": "unknown", "backbone": "i3d_tiny",
                         "auroc": value})
    table = pd.DataFrame(rows)
    settings = {t: t.split("_seed")[0] for t in table["trial"]}
    out = seed_summary(table, settings).set_index("method")
    assert out.loc["softmax", "num_seeds"] == 3 and out.loc["softmax", "seeds"] == "0,1,2"
    assert out.loc["dear", "auroc"] == pytest.approx(0.70)
    sd = np.std([0.70, 0.71, 0.69], ddof=1)
    assert out.loc["dear", "auroc_ci_high"] == pytest.approx(0.70 + 4.302653 * sd / np.sqrt(3), rel=1e-6)
    # differences 0.10, 0.09, 0.11: mean 0.10, sd 0.01 -> [0.075, 0.125], excludes 0
    assert bool(out.loc["dear", "auroc_diff_sig"]) is True
    assert out.loc["softmax", "auroc_diff_sig"] is pd.NA
    # without settings every trial is its own setting: one seed each, no interval
    single = seed_summary(table)
    assert (single["num_seeds"] == 1).all() and single["auroc_ci_low"].isna().all()
