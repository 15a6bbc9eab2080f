import dataclasses

import numpy as np
import pandas as pd
import pytest

from dear_ray.metrics import METRIC_KEYS, draw_unknown_subsets, open_set_report
from dear_ray.metrics.evaluate import (
    CI_COLUMNS,
    CURVES_FILE,
    DETECTOR_COLUMN,
    DETECTOR_PARAMS_COLUMN,
    INFO_COLUMNS,
    SCORES_FILE,
    SIG_COLUMNS,
    evaluate_stores,
)
from dear_ray.metrics.ood import binarized_auc_of_decisions
from dear_ray.scores import OpenMax, compute_scores, methods_for_head, read_score_store, write_score_store


def _load(paths):
    return {split: read_score_store(p) for split, p in paths.items()}


def test_every_method_with_the_same_subsets(make_stores, tmp_path):
    soft = make_stores(head="softmax", run="soft")
    dear = make_stores(head="dear", run="dear", seed=1, shifted=False)
    out = tmp_path / "report"
    table = evaluate_stores([*soft.values(), *dear.values()], out, num_trials=3, seed=4, posthoc=())
    assert list(table.columns) == [*INFO_COLUMNS, *METRIC_KEYS, *CI_COLUMNS, *SIG_COLUMNS, DETECTOR_COLUMN,
                                   DETECTOR_PARAMS_COLUMN]
    assert DETECTOR_COLUMN in (out / "results.csv").read_text().splitlines()[0]
    assert DETECTOR_COLUMN not in (out / "results.md").read_text()
    assert (table["unknown_set"] == "hmdb").all()
    assert table[["method", "score"]].values.tolist() == [
        ["dear", "vacuity"], ["softmax", "msp"], ["mc_dropout", "bald"], ["openmax", "openmax"]]
    # the rows `dear-ray sweep --dry-run` announces for each trained head
    assert table.groupby("run", sort=False)["method"].apply(list).to_dict() == {
        "dear": methods_for_head("dear"), "soft": methods_for_head("softmax", stochastic_passes=3)}
    assert np.isnan(table.loc[0, "shifted_top1"]) and not np.isnan(table.loc[1, "shifted_top1"])

    subsets = draw_unknown_subsets([3, 8, 11], num_trials=3, seed=4)
    s, d = _load(soft), _load(dear)
    expected_dear = open_set_report(train=d["train"], known=d["test"], unknown=d["unknown"], score="vacuity",
                                    subsets=subsets).metrics
    expected_bald = open_set_report(train=s["train"], known=s["test"], unknown=s["unknown"], score="bald",
                                    shifted=s["test_shifted"], subsets=subsets).metrics
    for key in expected_dear:
        assert table.loc[0, key] == pytest.approx(expected_dear[key], abs=1e-12), key
        assert table.loc[2, key] == pytest.approx(expected_bald[key], abs=1e-12), key
    # OpenMax decides by the argmax over K+1 (DEAR baseline_openmax.py): no threshold
    om = OpenMax().fit(s["train"].logits, s["train"].labels, s["train"].features)
    known_dec = om.predict(s["test"].logits, features=s["test"].features)
    unknown_dec = om.predict(s["unknown"].logits, features=s["unknown"].features)
    assert np.isnan(table.loc[3, "threshold"])
    assert table.loc[3, "binarized_auc"] == pytest.approx(binarized_auc_of_decisions(known_dec == 4, unknown_dec == 4))
    assert table.loc[3, "closed_top1"] == pytest.approx(np.mean(known_dec == s["test"].labels))
    assert table.loc[3, "auroc"] > 0.5
    # every metric but the threshold has an interval around it; the baseline has no diff_sig
    for key in METRIC_KEYS:
        if key == "threshold":
            continue
        ok = table[key].notna()
        assert (table.loc[ok, f"{key}_ci_low"] <= table.loc[ok, key] + 1e-12).all(), key
        assert (table.loc[ok, f"{key}_ci_high"] >= table.loc[ok, key] - 1e-12).all(), key
    assert table.loc[1, SIG_COLUMNS].isna().all() and table.loc[2, "auroc_diff_sig"] in (True, False)
    for name in ("results.csv", "results.parquet", "results.md", "openness_curves.png", "hist_dear_hmdb.png",
                 "reliability_openmax.png", "confusion_mc_dropout_hmdb.png"):
        assert (out / name).stat().st_size > 0, name
    pd.testing.assert_frame_equal(pd.read_parquet(out / "results.parquet"), table)

    # the plots' data: the curve and the scores of each row, as open_set_report computed them
    curves, scores = pd.read_parquet(out / CURVES_FILE), pd.read_parquet(out / SCORES_FILE)
    assert list(curves["label"].unique()) == list(scores["label"].unique()) == list(table["method"])
    report = open_set_report(train=d["train"], known=d["test"], unknown=d["unknown"], score="vacuity",
                             subsets=subsets)
    dear_curve = curves[curves["label"] == "dear"]
    assert dear_curve["num_unknown_classes"].tolist() == [0, 1, 2, 3]
    np.testing.assert_allclose(dear_curve["f1_mean"], report.curve.f1_mean, atol=1e-12)
    np.testing.assert_allclose(dear_curve["f1_std"], report.curve.f1_std, atol=1e-12)
    np.testing.assert_allclose(dear_curve["openness"], report.curve.openness, atol=1e-12)
    dear_scores = scores[scores["label"] == "dear"]
    np.testing.assert_allclose(dear_scores.loc[dear_scores["split"] == "known", "uncertainty"],
                               report.known_scores)
    np.testing.assert_allclose(dear_scores.loc[dear_scores["split"] == "unknown", "uncertainty"],
                               report.unknown_scores)
    assert (dear_scores["threshold"] == table.loc[0, "threshold"]).all()
    md = (out / "results.md").read_text().splitlines()
    assert md[0].startswith("| method | score | run |") and len(md) == 2 + 4 + 2 + 2
    assert md[-1] == ("Settings: DEAR's get_threshold.py thresholds as printed (6 decimals); open maF1 over "
                      "the same seeded class subsets for every method (seed 4).")
    assert " [" in md[2]  # value [low, high]
    assert {"f1_ci_low", "f1_ci_high", "unknown_set"} <= set(curves.columns)


def test_requested_scores_and_skips(make_stores, tmp_path):
    soft = make_stores(head="softmax", run="soft")
    dear = make_stores(head="dear", run="dear", seed=1)
    with pytest.warns(UserWarning, match="score 'energy' is not in all its stores"):
        table = evaluate_stores([*soft.values(), *dear.values()], tmp_path, scores=["energy", "msp"], num_trials=2,
                                 plots=False)
    assert not list(tmp_path.glob("*.png"))
    assert table[["method", "score"]].values.tolist() == [
        ["dear", "msp"], ["softmax", "energy"], ["softmax", "msp"]]
    with pytest.raises(ValueError, match="none of the scores"):
        with pytest.warns(UserWarning):
            evaluate_stores(list(dear.values()), tmp_path, scores=["energy"], plots=False)


def test_incomplete_or_duplicated_models_raise(make_stores, tmp_path):
    paths = make_stores(run="m")
    with pytest.raises(ValueError, match=r"run 'm' \(softmax\): no train store"):
        evaluate_stores([paths["test"], paths["unknown"]], tmp_path)
    with pytest.raises(ValueError, match=r"run 'm' \(softmax\): 2 'test' stores"):
        evaluate_stores([paths["train"], paths["test"], paths["test"], paths["unknown"]], tmp_path)
    with pytest.raises(ValueError, match="no score store paths"):
        evaluate_stores([], tmp_path)


def test_each_unknown_set_is_reported_on_its_own(make_stores, tmp_path):
    """DEAR reports HMDB-51 and MiT-v2 separately (--ood_data HMDB|MiT): one row per set, each
    equal to a report on that set's store alone; a merged row only when asked, named `all`."""
    paths = make_stores(head="softmax", run="soft")
    s = _load(paths)
    mit = dataclasses.replace(s["unknown"].meta, dataset="mit")
    rng = np.random.default_rng(9)
    logits = rng.normal(size=(40, 4))
    samples = logits[None] + rng.normal(size=(5, 40, 4))
    mit_path = write_score_store(tmp_path / "soft" / "unknown_mit.parquet", video_ids=[f"m{i}" for i in range(40)],
                                 labels=np.repeat([0, 1, 2, 3], 10), logits=logits, features=rng.normal(size=(40, 6)),
                                 sample_logits=samples, scores=compute_scores("softmax", logits, sample_logits=samples),
                                 meta=mit)
    table = evaluate_stores([*paths.values(), mit_path], tmp_path / "out", num_trials=2, plots=False, resamples=20,
                            curve_resamples=5, posthoc=())
    soft = table[table["method"] == "softmax"].set_index("unknown_set")
    assert sorted(soft.index) == ["hmdb", "mit"]  # no merged row by default
    m = _load({"m": mit_path})["m"]
    for name, store in (("hmdb", s["unknown"]), ("mit", m)):
        expected = open_set_report(train=s["train"], known=s["test"], unknown=store, score="msp",
                                   shifted=s["test_shifted"],
                                   subsets=draw_unknown_subsets(store.labels, num_trials=2, seed=0)).metrics
        for key in ("auroc", "open_maf1", "binarized_auc", "closed_top1"):
            assert soft.loc[name, key] == pytest.approx(expected[key], abs=1e-12), (name, key)
    merged = evaluate_stores([*paths.values(), mit_path], tmp_path / "out2", num_trials=2, plots=False,
                             merged_unknown=True, resamples=0, posthoc=())
    assert sorted(merged.loc[merged["method"] == "softmax", "unknown_set"]) == ["all", "hmdb", "mit"]
    assert merged["auroc_ci_low"].isna().all()  # resamples=0: no intervals


def test_two_sweeps_with_the_same_trial_names_compare_in_one_table(make_stores, tmp_path,
                                                                   capsys):
    """`dear-ray evaluate A/stores B/stores` (issue 15 item 10): same trial names, one table."""
    import shutil

    from dear_ray.cli import main

    make_stores(run="edl_trial", head="edl", seed=1)
    for sweep in ("before", "after"):
        shutil.copytree(tmp_path / "edl_trial", tmp_path / sweep / "stores" / "edl_trial")
    code = main(["evaluate", str(tmp_path / "before" / "stores"),
                 str(tmp_path / "after" / "stores"), "--out", str(tmp_path / "cmp"),
                 "--resamples", "20"])
    assert code == 0
    table = pd.read_csv(tmp_path / "cmp" / "results.csv")
    assert sorted(set(table["run"])) == ["after/edl_trial", "before/edl_trial"]
    a, b = (table[table["run"] == r].iloc[0] for r in ("after/edl_trial", "before/edl_trial"))
    assert a["auroc"] == pytest.approx(b["auroc"])  # the same stores: the same numbers
    assert "before/edl_trial" in capsys.readouterr().out


def test_psl_trial_is_reported_with_its_mahalanobis_score(make_stores, tmp_path):
    """A psl model's row uses PSL's test score, fitted on its train store (dear_ray.scores.psl)."""
    from dear_ray.scores import create_score

    paths = make_stores(head="psl", run="p1", seed=2)
    table = evaluate_stores(list(paths.values()), tmp_path / "out", plots=False, resamples=0)
    assert list(table["method"]) == ["psl"] and list(table["score"]) == ["psl"]
    train, test, unknown = (read_score_store(paths[s]) for s in ("train", "test", "unknown"))
    model = create_score("psl").fit(train.logits, train.labels, train.features)
    from sklearn.metrics import roc_auc_score

    scores = np.concatenate([model(test.logits, features=test.features),
                             model(unknown.logits, features=unknown.features)])
    truth = np.r_[np.zeros(len(test.labels)), np.ones(len(unknown.labels))]
    assert table["auroc"].iloc[0] == pytest.approx(roc_auc_score(truth, scores))


def test_each_row_is_compared_with_the_softmax_baseline_of_its_own_data_folder(monkeypatch):
    """The demo's biased and unbiased copies share the data set's name and the video ids: each
    has its softmax baseline, and a row pairs with the one on its own data folder."""
    from dear_ray.metrics import evaluate

    def row(run, method, score, data):
        info = {"method": method, "score": score, "run": run, "known": "synth", "data": data,
                "unknown_set": "unknown", "backbone": "r3d18_tiny", "seed": 0}
        return evaluate._Row(info, None, object(), f"{run}/{method}")

    rows = [row("softmax", "softmax", "msp", "data/synth"), row("bnn", "bnn", "bald", "data/synth"),
            row("control", "softmax", "msp", "data/synth_unbiased"),
            row("control", "mc_dropout", "bald", "data/synth_unbiased")]
    pairs = []

    def paired(a, b, key):
        pairs.append((rows.index(next(r for r in rows if r.boot is a)),
                      rows.index(next(r for r in rows if r.boot is b))))
        return (0.01, 0.02)

    monkeypatch.setattr(evaluate, "paired_difference", paired)
    sig = evaluate._significance(rows)
    assert set(pairs) == {(1, 0), (3, 2)}  # bnn vs the biased softmax, mc_dropout vs the control
    assert sig[1]["auroc_diff_sig"] is True and sig[3]["auroc_diff_sig"] is True
    assert sig[0]["auroc_diff_sig"] is pd.NA and sig[2]["auroc_diff_sig"] is pd.NA
    # without the data folders both softmax rows are candidates for bnn: no comparison at all
    for r in rows:
        r.info["data"] = ""
    pairs.clear()
    assert evaluate._significance(rows)[1]["auroc_diff_sig"] is pd.NA


def test_evidential_scores_by_name_and_the_detector_column(make_stores, tmp_path):
    """`scores=[...]` reaches the evidential post-hoc scores of an EDL model, and a feature-based
    detector row says in `detector` what it read; rows without a detector leave it empty."""
    edl = make_stores(head="edl", run="edl")
    table = evaluate_stores([*edl.values()], tmp_path / "e", scores=["vacuity", "mpu", "mutual_info"],
                            num_trials=2, resamples=0, posthoc=())
    assert sorted(table["score"]) == ["mpu", "mutual_info", "vacuity"]
    assert table["auroc"].notna().all()
    soft = make_stores(head="softmax", run="soft", seed=2)
    table = evaluate_stores([*soft.values()], tmp_path / "s", num_trials=2, resamples=0, posthoc=("mahalanobis",))
    detector = table.set_index("method")[DETECTOR_COLUMN]
    assert "features" in detector["softmax+mahalanobis"]
    assert detector["softmax"] == ""
