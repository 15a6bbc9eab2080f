"""Static-bias metrics (StillMix's SCUBA / SCUFO, issue 12): hand computations, pairing, intervals,
and the report / table rows that carry them."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from dear_ray.metrics import draw_unknown_subsets, open_set_report
from dear_ray.metrics.bootstrap import bootstrap_report, paired_difference
from dear_ray.metrics.evaluate import evaluate_stores
from dear_ray.metrics.protocols import PslSlice, psl_bootstrap
from dear_ray.metrics.static_bias import (
    STATIC_BIAS_KEYS,
    contrast_accuracy,
    pair_by_video_id,
    resample_static_bias,
    static_bias_metrics,
)
from dear_ray.scores import StoreMeta, compute_scores, read_score_store, write_score_store

# five SCUBA clips and four SCUFO clips (d's still is missing, e.g. undecodable), in another order
SCUBA_IDS = np.array(["a", "b", "c", "d", "e"])
SCUBA_OK = np.array([True, True, False, True, False])
SCUFO_IDS = np.array(["e", "c", "a", "b"])
SCUFO_OK = np.array([True, False, False, True])


def test_metrics_by_hand():
    """SCUBA 3/5 right, SCUFO 2/4 right (e, b); the pairs a, b, c, e: right on SCUBA and wrong on
    SCUFO is a only (b is right on both, c wrong on both, e the wrong way round): 1/4."""
    m = static_bias_metrics(scuba_correct=SCUBA_OK, scuba_ids=SCUBA_IDS, scufo_correct=SCUFO_OK,
                            scufo_ids=SCUFO_IDS)
    assert m == {"scuba_top1": pytest.approx(0.6), "scufo_top1": pytest.approx(0.5),
                 "contrast_acc": pytest.approx(0.25)}
    rows_a, rows_b = pair_by_video_id(SCUBA_IDS, SCUFO_IDS)
    assert SCUBA_IDS[rows_a].tolist() == SCUFO_IDS[rows_b].tolist() == ["a", "b", "c", "e"]
    assert contrast_accuracy(SCUBA_OK[rows_a], SCUFO_OK[rows_b]) == pytest.approx(0.25)
    # StillMix's count on its shared list: same line = same video; every line has both results
    assert contrast_accuracy([True, True, False], [False, True, False]) == pytest.approx(1 / 3)
    # SCUBA only (Mimetics): no SCUFO top-1, no contrast accuracy
    assert static_bias_metrics(scuba_correct=SCUBA_OK, scuba_ids=SCUBA_IDS) == {"scuba_top1": pytest.approx(0.6)}
    assert np.isnan(contrast_accuracy([], []))


def test_pairing_refuses_duplicate_ids_and_label_mismatches():
    with pytest.raises(ValueError, match="'a' appears 2 times"):
        pair_by_video_id(["a", "a", "b"], ["a", "b"])
    with pytest.raises(ValueError, match="SCUFO clip 'b' has label 2, its SCUBA clip 1"):
        pair_by_video_id(["a", "b"], ["b", "a"], scuba_labels=[0, 1], scufo_labels=[2, 0])
    with pytest.raises(ValueError, match="pass the paired clips"):
        contrast_accuracy([True, False], [True])


def test_resamples_index_the_videos_sorted_by_id():
    """Two hand-made resamples: the whole set in id order, and n copies of the first id."""
    draws = []

    def draw(split, n):
        draws.append((split, n))
        return np.stack([np.arange(n), np.zeros(n, dtype=int)])

    values, ids = resample_static_bias(scuba_correct=SCUBA_OK, scuba_ids=SCUBA_IDS, scufo_correct=SCUFO_OK,
                                       scufo_ids=SCUFO_IDS, draw=draw)
    assert draws == [("test_scuba", 5), ("test_scufo", 4), ("scuba_scufo_pairs", 4)]
    assert values["scuba_top1"] == pytest.approx([0.6, 1.0])  # copies of a: right
    assert values["scufo_top1"] == pytest.approx([0.5, 0.0])  # copies of a's still: wrong
    assert values["contrast_acc"] == pytest.approx([0.25, 1.0])  # the pair a: right, then wrong
    assert ids == {"scuba": tuple("abcde"), "scufo": tuple("abce"), "pairs": tuple("abce")}


# ------------------------------------------------------------------------------------------------
# the report, its intervals and the table


def _static_bias_stores(tmp_path, run: str, head: str = "softmax", seed: int = 0, k: int = 4) -> dict:
    """SCUBA stores of 24 clips (logits that often name the class) and SCUFO stores of 20 of
    them, in reverse order (logits that rarely do), for the model `run` of `make_stores`."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(k), 6)
    ids = np.array([f"v{i:02d}" for i in range(labels.size)])
    paths = {}
    for split, rows, strength in (("test_scuba", np.arange(24), 3.0), ("test_scufo", np.arange(20)[::-1], 0.3)):
        logits = rng.normal(size=(rows.size, k)) + strength * np.eye(k)[labels[rows]]
        meta = StoreMeta(split=split, dataset="synth", num_known=k, head=head, checkpoint=f"{run}.pt", run=run)
        paths[split] = write_score_store(tmp_path / run / f"{split}.parquet", video_ids=ids[rows],
                                         labels=labels[rows], logits=logits, features=None,
                                         sample_logits=None, scores=compute_scores(head, logits), meta=meta)
    return paths


def _report(stores, **kw):
    subsets = draw_unknown_subsets(stores["unknown"].labels, num_trials=2, seed=0)
    return open_set_report(train=stores["train"], known=stores["test"], unknown=stores["unknown"], score="msp",
                           shifted=stores["test_shifted"], subsets=subsets, **kw), subsets


def test_report_rows_and_intervals(make_stores, tmp_path):
    paths = {**make_stores(head="softmax"), **_static_bias_stores(tmp_path, "m1")}
    s = {k: read_score_store(p) for k, p in paths.items()}
    rep, subsets = _report(s, scuba=s["test_scuba"], scufo=s["test_scufo"])
    a_ok = s["test_scuba"].preds == s["test_scuba"].labels
    b_ok = s["test_scufo"].preds == s["test_scufo"].labels
    by_id = dict(zip(s["test_scufo"].video_ids, b_ok, strict=True))
    pairs = [(ok, by_id[v]) for v, ok in zip(s["test_scuba"].video_ids, a_ok, strict=True) if v in by_id]
    assert rep.metrics["scuba_top1"] == pytest.approx(a_ok.mean())
    assert rep.metrics["scufo_top1"] == pytest.approx(b_ok.mean())
    assert rep.metrics["contrast_acc"] == pytest.approx(np.mean([x and not y for x, y in pairs]))
    assert len(pairs) == 20 and rep.metrics["scuba_top1"] > rep.metrics["scufo_top1"]
    boot = bootstrap_report(rep, subsets, resamples=300, curve_resamples=10)
    for key in STATIC_BIAS_KEYS:
        low, high = boot.interval(key)
        assert low <= rep.metrics[key] <= high, key
    # the same videos: a paired difference; a report without SCUFO has no contrast interval
    other, _ = _report(s, scuba=s["test_scuba"], scufo=s["test_scufo"])
    assert paired_difference(boot, bootstrap_report(other, subsets, resamples=300, curve_resamples=10),
                             "contrast_acc") == (0.0, 0.0)
    scuba_only, _ = _report(s, scuba=s["test_scuba"])
    only = bootstrap_report(scuba_only, subsets, resamples=50, curve_resamples=5)
    assert "scuba_top1" in only.values and "contrast_acc" not in only.values
    assert paired_difference(only, boot, "contrast_acc") is None
    whole = PslSlice(np.arange(len(rep.known_ids)), np.arange(len(rep.unknown_ids)))
    assert set(STATIC_BIAS_KEYS) <= set(psl_bootstrap(rep, [whole], resamples=20).values)
    # a store given as the wrong split is refused
    with pytest.raises(ValueError, match="test_scufo"):
        _report(s, scufo=s["test_scuba"])


def test_table_has_the_columns_only_when_the_stores_exist(make_stores, tmp_path):
    with_sb = [*make_stores(head="softmax", run="soft").values(), *_static_bias_stores(tmp_path, "soft").values()]
    without = list(make_stores(head="edl", run="evid", seed=1).values())
    table = evaluate_stores(with_sb + without, tmp_path / "out", plots=False, resamples=30, curve_resamples=5,
                            posthoc=())
    soft = table[table["method"] == "softmax"].iloc[0]
    evid = table[table["method"] == "edl"].iloc[0]
    for key in STATIC_BIAS_KEYS:
        assert np.isfinite(soft[key]) and soft[f"{key}_ci_low"] <= soft[key] <= soft[f"{key}_ci_high"]
        assert np.isnan(evid[key])
    assert "scufo_top1" in (tmp_path / "out" / "results.md").read_text().splitlines()[0]
    # no model with SCUBA / SCUFO stores: the markdown table has no such columns, and no error
    plain = evaluate_stores(without, tmp_path / "plain", plots=False, resamples=10, curve_resamples=5)
    header = (tmp_path / "plain" / "results.md").read_text().splitlines()[0]
    assert all(key in plain.columns for key in STATIC_BIAS_KEYS) and plain[list(STATIC_BIAS_KEYS)].isna().all().all()
    assert not any(key in header for key in STATIC_BIAS_KEYS) and "shifted_top1" in header


def test_console_and_demo_tables_show_the_static_bias_columns_only_with_values():
    from dear_ray.demo import _DEMO_COLUMNS
    from dear_ray.tracking.console import format_results_table

    table = pd.DataFrame({"trial": ["softmax", "sdn"], "method": ["softmax", "sdn"],
                          "closed_top1": [0.9, 0.8], "scuba_top1": [0.5, 0.6], "scufo_top1": [0.4, 0.2],
                          "contrast_acc": [0.3, 0.45]})
    text = format_results_table(table, _DEMO_COLUMNS)
    assert text.splitlines()[0].split() == ["trial", "method", "closed_top1", "scuba_top1", "scufo_top1",
                                            "contrast_acc"]
    assert "higher is better: closed_top1, scuba_top1, contrast_acc" in text
    assert "lower is better: scufo_top1" in text
    empty = table.assign(**{k: float("nan") for k in STATIC_BIAS_KEYS})
    assert format_results_table(empty, _DEMO_COLUMNS).splitlines()[0].split() == ["trial", "method", "closed_top1"]
