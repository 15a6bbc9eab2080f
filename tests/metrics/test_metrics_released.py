"""The released evaluation code's behaviours on imported stores, each against a hand computation:
DEAR's compare_openness.py (imported threshold, its np.random subset stream, printed thresholds)
and PSL's compare_openness_new_*.py (MiT-v2 slices after a fixed known block, the specific-threshold
table, the HMDB-51 overlap by class index)."""

import numpy as np
import pytest
from sklearn.metrics import auc, precision_recall_curve, roc_auc_score, roc_curve

from dear_ray.metrics.evaluate import evaluate_stores
from dear_ray.metrics.literature import evaluate_model
from dear_ray.metrics.openset import draw_dear_stream_subsets
from dear_ray.metrics.protocols import psl_slices, psl_unknown
from dear_ray.metrics.report import binarized_metrics, open_set_report, printed_threshold, report_threshold
from dear_ray.scores import read_score_store
from dear_ray.scores.importing import import_scores


def _imported(tmp_path, name, *, known, known_labels, known_preds, unknown, unknown_labels, unknown_set="x",
              threshold=None, known_set="k3"):
    np.savez(tmp_path / f"{name}.npz", ind_unctt=np.asarray(known, np.float64),
             ood_unctt=np.asarray(unknown, np.float64),
             ind_pred=np.asarray(known_preds), ood_pred=np.zeros(len(unknown), np.int64),
             ind_label=np.asarray(known_labels), ood_label=np.asarray(unknown_labels))
    paths = import_scores([tmp_path / f"{name}.npz"], method=name, unknown_set=unknown_set, known_set=known_set,
                          out_dir=tmp_path / "stores", threshold=threshold)
    return paths, [read_score_store(p) for p in paths]


def test_binarised_metrics_of_rejections_by_hand():
    # known rejected [0,0,1,0], unknown [1,1,0]: TPR 2/3, FPR 1/4
    m = binarized_metrics([0, 0, 1, 0], [1, 1, 0])
    assert m["binarized_auc"] == pytest.approx(0.5 * (1 + 2 / 3 - 1 / 4))
    # PR points (recall, precision): (0, 1), (2/3, 2/3), (1, 3/7); trapezoids 5/9 + 23/126
    assert m["binarized_aupr_out_trapz"] == pytest.approx(5 / 9 + 23 / 126)
    # ROC (0,0), (1/4, 2/3), (1,1): |TPR - 0.95| is least at (1, 1)
    assert m["binarized_fpr_at_95_tpr_nearest"] == 1.0


def test_imported_store_uses_its_threshold_and_has_no_threshold_metrics_without_one(tmp_path):
    _, (known, unknown) = _imported(tmp_path, "m", known=[0.1, 0.4, 0.2, 0.6], known_labels=[0, 1, 2, 0],
                                    known_preds=[0, 1, 1, 0], unknown=[0.5, 0.3, 0.7], unknown_labels=[0, 1, 1],
                                    threshold=0.35)
    subsets = [[np.array([0]), np.array([1])], [np.array([0, 1])] * 2]
    rep = open_set_report(train=None, known=known, unknown=unknown, score="uncertainty", subsets=subsets)
    m = rep.metrics
    assert m["threshold"] == 0.35 and m["closed_top1"] == 0.75  # the file's predictions [0,1,1,0] vs [0,1,2,0]
    # rejected: known 0.4, 0.6 (2 of 4); unknown 0.5, 0.7 (2 of 3)
    assert m["binarized_auc"] == pytest.approx(0.5 * (1 + 2 / 3 - 2 / 4))
    # known decisions [0, K=3, 1, K]; unknown [K, 0, K]
    assert rep.known_decisions.tolist() == [0, 3, 1, 3] and rep.unknown_decisions.tolist() == [3, 0, 3]
    assert np.isnan(m["ece"]) and np.isnan(m["closed_top5"])  # no logits
    assert m["auroc"] == pytest.approx(roc_auc_score([0] * 4 + [1] * 3, [0.1, 0.4, 0.2, 0.6, 0.5, 0.3, 0.7]))
    _, (k2, u2) = _imported(tmp_path, "n", known=[0.1, 0.4, 0.2, 0.6], known_labels=[0, 1, 2, 0],
                            known_preds=[0, 1, 1, 0], unknown=[0.5, 0.3, 0.7], unknown_labels=[0, 1, 1])
    none = open_set_report(train=None, known=k2, unknown=u2, score="uncertainty", subsets=subsets)
    assert none.curve is None and all(np.isnan(none.metrics[k]) for k in ("threshold", "open_maf1", "binarized_auc"))
    assert none.metrics["auroc"] == m["auroc"]


def test_dear_stream_continues_across_methods():
    # compare_openness.py: np.random.seed(123) once, then per method, per n = 1..U, per trial:
    # np.random.choice(U, n, replace=False)
    np.random.seed(123)
    expected = []
    for _method in range(2):
        expected.append([[np.sort(np.random.choice(4, n, replace=False)) for _ in range(3)] for n in range(1, 5)])
    for position in range(2):
        got = draw_dear_stream_subsets(4, num_trials=3, position=position)
        assert [[s.tolist() for s in level] for level in got] == \
            [[s.tolist() for s in level] for level in expected[position]]
    assert [s.tolist() for s in draw_dear_stream_subsets(4, num_trials=3)[0]] != \
        [s.tolist() for s in draw_dear_stream_subsets(4, num_trials=3, position=1)[0]]


def test_printed_threshold_is_getthresholds_print(make_stores):
    assert printed_threshold(0.0000224999) == 0.000022 and printed_threshold(0.0045494) == 0.004549
    assert printed_threshold(2.9e-7) == 0.0  # a BALD threshold below 5e-7 prints as 0.000000
    s = {split: read_score_store(p) for split, p in make_stores(head="softmax").items()}
    exact = report_threshold(s["train"], s["test"], "bald", threshold_print="exact")
    assert report_threshold(s["train"], s["test"], "bald") == float("%f" % exact) != exact
    # SoftMax / RPL thresholds are computed in-script (baseline_softmax.py), never printed
    msp = report_threshold(s["train"], s["test"], "msp", threshold_print="exact")
    assert report_threshold(s["train"], s["test"], "msp") == msp != float("%f" % msp)


def test_psl_mit_slices_after_a_fixed_known_block():
    # eval_osr: rows = [known (5); unknown (20)], y[:4] is the known block, the other 21 rows are cut
    # into 10 slices of int(21 / 10) = 2: the 5th known video opens slice 0, the last unknown is dropped
    known, unknown = [f"k{i}" for i in range(5)], [f"u{i:02d}" for i in range(20)]
    slices = psl_slices(known, unknown, "mit_v2", mit_known_rows=4)
    assert len(slices) == 10
    assert slices[0].known.tolist() == [0, 1, 2, 3, 4] and slices[0].unknown.tolist() == [0]
    assert slices[1].known.tolist() == [0, 1, 2, 3] and slices[1].unknown.tolist() == [1, 2]
    assert slices[9].unknown.tolist() == [17, 18]
    # with fewer known rows than the block, the first unknown video sits in every slice's "known"
    # block (as a positive); the other 19 make slices of 1
    short = psl_slices(known[:3], unknown, "mit_v2", mit_known_rows=4)
    assert short[0].known.tolist() == [0, 1, 2] and short[0].unknown.tolist() == [0, 1]
    assert short[1].unknown.tolist() == [0, 2] and short[9].unknown.tolist() == [0, 10]
    exact = psl_slices(known, unknown, "mit_v2", mit_known_rows=None)
    assert all(s.known.tolist() == [0, 1, 2, 3, 4] and s.unknown.size == 2 for s in exact)
    assert psl_slices(known, unknown, "hmdb51")[0].unknown.size == 20  # other sets: one, whole


def test_psl_metrics_are_the_mean_over_the_released_slices(tmp_path):
    rng = np.random.default_rng(0)
    ks, us = rng.random(5), rng.random(20) + 0.3
    _, (known, unknown) = _imported(tmp_path, "m", known=ks, known_labels=[0, 1, 2, 0, 1], known_preds=[0, 1, 2, 0, 1],
                                    unknown=us, unknown_labels=np.arange(20) % 4, unknown_set="mit_v2")
    m = evaluate_model(known, unknown, "psl", mit_known_rows=4)
    aurocs, auprs, fprs = [], [], []
    for i in range(10):  # y_true / y_pred of PSL's slice i, written out
        extra = [ks[4]] if i == 0 else []
        part = us[:1] if i == 0 else us[2 * i - 1: 2 * i + 1]
        y = np.r_[np.zeros(4 + len(extra)), np.ones(part.size)]
        s = np.r_[ks[:4], extra, part]
        aurocs.append(roc_auc_score(y, s))
        precision, recall, _ = precision_recall_curve(y, s)
        auprs.append(auc(recall, precision))
        fpr, tpr, _ = roc_curve(y, s)
        fprs.append(fpr[np.abs(tpr - 0.95).argmin()])
    assert m["auroc"] == pytest.approx(np.mean(aurocs))
    assert m["aupr_out_trapz"] == pytest.approx(np.mean(auprs))
    assert m["fpr_at_95_tpr_nearest"] == pytest.approx(np.mean(fprs))
    assert m["auroc"] != pytest.approx(evaluate_model(known, unknown, "psl", mit_known_rows=None)["auroc"])


def test_psl_specific_threshold_is_dears_else_the_85_percent_known_cut(tmp_path):
    ks = np.arange(1, 11) / 10  # 0.1 .. 1.0: desc[10 - int(8.5) - 1] = desc[1] = 0.9
    us = np.array([0.95, 0.5, 1.0])
    kw = dict(known=ks, known_labels=np.arange(10) % 3, known_preds=np.arange(10) % 3, unknown=us,
              unknown_labels=[0, 1, 2])
    _, (known, unknown) = _imported(tmp_path, "cut", **kw)
    m = evaluate_model(known, unknown, "psl")
    # reject > 0.9: known 1.0 (1 of 10), unknown 0.95, 1.0 (2 of 3)
    assert m["threshold"] == 0.9 and m["binarized_auc"] == pytest.approx(0.5 * (1 + 2 / 3 - 1 / 10))
    _, (known, unknown) = _imported(tmp_path, "dear", threshold=0.45, **kw)
    m = evaluate_model(known, unknown, "psl")
    # reject > 0.45 (as typed, float64 file): known 0.5 .. 1.0 (6 of 10), unknown 0.95, 0.5, 1.0
    assert m["threshold"] == 0.45 and m["binarized_auc"] == pytest.approx(0.5 * (1 + 1 - 6 / 10))
    assert np.isnan(m["open_maf1"])


def test_psl_hmdb_overlap_by_class_index_in_the_files_order(tmp_path):
    # DEAR's / PSL's HMDB-51 labels are in MMAction2's order: 5 = climb, 6 = climb_stairs (the
    # other way round in `dear-ray data lists` order); PSL drops ids [35, 29, 15, 26, 30, 34, 43, 31]
    labels = np.array([35, 29, 15, 26, 30, 34, 43, 31, 5, 6, 50])
    _, (known, unknown) = _imported(tmp_path, "h", known=[0.1, 0.2, 0.3], known_labels=[0, 1, 2],
                                    known_preds=[0, 1, 2], unknown=np.linspace(0, 1, 11), unknown_labels=labels,
                                    unknown_set="hmdb51", known_set="ucf101")
    assert unknown.meta.extra["class_order"] == "mmaction2"
    assert psl_unknown(unknown).labels.tolist() == [5, 6, 50]
    assert psl_unknown(unknown, hmdb_order="lists").labels.tolist() == [5, 6, 50]  # the store's order wins


def test_evaluate_stores_on_imported_stores_equals_the_literature_evaluation(tmp_path):
    rng = np.random.default_rng(3)
    paths, (known, unknown) = _imported(tmp_path, "m", known=rng.random(30), known_labels=np.arange(30) % 3,
                                        known_preds=(np.arange(30) + (np.arange(30) % 7 == 0)) % 3,
                                        unknown=rng.random(20) + 0.2, unknown_labels=np.arange(20) % 5,
                                        unknown_set="x", threshold=0.6)
    for protocol in ("dear", "psl"):
        with pytest.warns(UserWarning, match="imported.*left out"):
            table = evaluate_stores(paths, tmp_path / protocol, protocol=protocol, resamples=20, plots=False)
        ours = evaluate_model(known, unknown, protocol)
        row = table.iloc[0]
        assert row["method"] == "m" and row["unknown_set"] == "x" and row["score"] == "uncertainty"
        for key in ("auroc", "aupr_out_trapz", "fpr_at_95_tpr_nearest", "binarized_auc", "closed_top1", "threshold"):
            assert row[key] == pytest.approx(ours[key]), (protocol, key)
        assert row["auroc_ci_low"] <= row["auroc"] <= row["auroc_ci_high"]
        assert np.isnan(row["ece"]) and np.isnan(row["ece_ci_low"])
    assert table.iloc[0]["open_maf1"] != table.iloc[0]["open_maf1"]  # psl: NaN
