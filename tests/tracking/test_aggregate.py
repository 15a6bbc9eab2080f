"""Tests of dear_ray.tracking.aggregate.report_sweep on synthetic score stores (no model)."""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient
from scipy.special import softmax

from dear_ray.metrics import combine_unknown_classes, draw_unknown_subsets, open_set_report
from dear_ray.metrics.evaluate import CURVES_FILE, SCORES_FILE
from dear_ray.metrics.posthoc import DETECTORS
from dear_ray.scores import (
    CLASSIFIER_KEY,
    EVIDENTIAL_POSTHOC,
    OpenMax,
    StoreMeta,
    compute_scores,
    read_score_store,
    write_classifier,
    write_score_store,
)
from dear_ray.tracking.aggregate import find_trial_stores, metric_name, report_sweep
from dear_ray.tracking.mlflow_runs import (
    TrialLogger,
    artifact_location_for,
    default_tracking_uri,
    ensure_experiment,
    start_parent_run,
)

K, UNKNOWN_CLASSES, F, S = 3, 4, 6, 5
SPLITS = {"train": 60, "test": 30, "test_shifted": 30, "unknown": 40}
POSTHOC_METHODS = [f"softmax+{name}" for name in DETECTORS]
WEIGHT = np.eye(K, F) * 4.0 / 3.0  # the softmax trial's classifier: logits = features @ WEIGHT.T + BIAS
BIAS = np.array([0.1, -0.2, 0.0])


def _write_trial(sweep_dir, trial: str, head: str, rng: np.random.Generator, *,
                 splits=tuple(SPLITS), classifier: bool = False) -> None:
    """Stores of one model: informative logits on known splits, flat ones on unknown videos; with
    `classifier`, the logits are the features through `WEIGHT`, `BIAS`, saved beside the stores."""
    extra = {}
    if classifier:
        write_classifier(sweep_dir / "stores" / trial, WEIGHT, BIAS)
        extra[CLASSIFIER_KEY] = "classifier.npz"
    for split in splits:
        n = SPLITS[split]
        if split == "unknown":
            labels = np.arange(n) % UNKNOWN_CLASSES
            logits = rng.normal(0.0, 1.0, (n, K))
        else:
            labels = np.arange(n) % K
            logits = rng.normal(0.0, 1.0, (n, K)) + 4.0 * np.eye(K)[labels]
        features = rng.normal(0.0, 1.0, (n, F)) + 3.0 * np.eye(K, F)[labels % K]
        if classifier:
            features = np.maximum(features, 0.0)  # post-ReLU pooled features, as a backbone's
            logits = features @ WEIGHT.T + BIAS
        sample_logits = logits[None] + rng.normal(0.0, 0.5, (S, n, K)) if head == "softmax" \
            else None
        write_score_store(
            sweep_dir / "stores" / trial / f"{split}.parquet",
            video_ids=[f"{split}_{i}" for i in range(n)], labels=labels, logits=logits,
            features=features, sample_logits=sample_logits,
            scores=compute_scores(head, logits, sample_logits=sample_logits),
            meta=StoreMeta(split=split, dataset="unk" if split == "unknown" else "synth",
                           num_known=K, head=head, checkpoint=f"{trial}/ckpt", run=trial, extra=extra))


@pytest.fixture(scope="module")
def sweep(tmp_path_factory, new_tracking_store):
    """A sweep dir with a softmax trial, an edl trial, and one trial missing its unknown store."""
    root = tmp_path_factory.mktemp("runs")
    sweep_dir = root / "sw"
    rng = np.random.default_rng(0)
    _write_trial(sweep_dir, "soft", "softmax", rng, classifier=True)
    _write_trial(sweep_dir, "evid", "edl", rng)
    _write_trial(sweep_dir, "broken", "edl", rng, splits=("train", "test"))
    uri = new_tracking_store(root)
    exp = ensure_experiment(uri, "sw", artifact_location=artifact_location_for(uri, root))
    parent = start_parent_run(uri, exp, sweep="sw")
    # the sweep creates the trial runs; "evid"'s run is left for the report to create
    soft_run = TrialLogger(uri, "sw", run_name="soft", parent_run_id=parent,
                           tags={"backbone": "i3d_tiny"}).run_id
    table = report_sweep(sweep_dir, tracking_uri=uri, experiment="sw", num_trials=4, seed=3)
    return {"dir": sweep_dir, "uri": uri, "exp": exp, "parent": parent, "soft_run": soft_run,
            "table": table}


def _row(table: pd.DataFrame, method: str) -> pd.Series:
    rows = table[table["method"] == method]
    assert len(rows) == 1, table[["trial", "method"]]
    return rows.iloc[0]


def test_table_has_every_method_and_skips_the_incomplete_trial(sweep):
    table = sweep["table"]
    assert sorted(zip(table["trial"], table["method"], table["score"].str.split("(").str[0])) == sorted([
        ("evid", "edl", "vacuity"), ("soft", "mc_dropout", "bald"), ("soft", "openmax", "openmax"),
        ("soft", "softmax", "msp"), *(("soft", f"softmax+{n}", n) for n in DETECTORS),
        *(("evid", f"edl+{n}", n) for n in EVIDENTIAL_POSTHOC)])
    # no val store: the temperature is fitted on the known test split, and the score says so
    assert _row(table, "softmax+temp_msp")["score"] == "temp_msp(test)"
    assert (table["protocol"] == "dear").all()
    assert (table["unknown_set"] == "unk").all()  # the unknown store's data set
    assert "broken" in (sweep["dir"] / "report" / "skipped_trials.txt").read_text()
    on_disk = pd.read_parquet(sweep["dir"] / "report" / "results.parquet")
    pd.testing.assert_frame_equal(on_disk, table.reset_index(drop=True))
    md = (sweep["dir"] / "report" / "results.md").read_text().splitlines()
    assert md[0].startswith("| trial | method |") and md[2].startswith("| evid | edl |")


def test_every_method_uses_the_same_unknown_subsets(sweep):
    stores = {s: read_score_store(sweep["dir"] / "stores" / "soft" / f"{s}.parquet")
              for s in SPLITS}
    subsets = draw_unknown_subsets(combine_unknown_classes([stores["unknown"]]), num_trials=4,
                                   seed=3)
    for method, score in (("softmax", "msp"), ("mc_dropout", "bald")):
        expected = open_set_report(train=stores["train"], known=stores["test"],
                                   unknown=[stores["unknown"]], score=score,
                                   shifted=stores["test_shifted"], subsets=subsets).metrics
        row = _row(sweep["table"], method)
        for key in ("open_maf1", "auroc", "closed_top1", "shifted_top1", "binarized_auc"):
            assert row[key] == pytest.approx(expected[key], abs=1e-12), (method, key)
    other = draw_unknown_subsets(combine_unknown_classes([stores["unknown"]]), num_trials=4,
                                 seed=4)
    moved = open_set_report(train=stores["train"], known=stores["test"], unknown=[stores["unknown"]],
                            score="msp", subsets=other).metrics["open_maf1"]
    assert moved != pytest.approx(_row(sweep["table"], "softmax")["open_maf1"], abs=1e-12)


def test_openmax_row_is_fitted_on_the_train_store(sweep):
    stores = {s: read_score_store(sweep["dir"] / "stores" / "soft" / f"{s}.parquet")
              for s in SPLITS}
    model = OpenMax(on="features").fit(stores["train"].logits, stores["train"].labels,
                                       stores["train"].features)
    scored = {s: st.with_scores({"openmax": model(st.logits, features=st.features)})
              for s, st in stores.items()}
    subsets = draw_unknown_subsets(combine_unknown_classes([stores["unknown"]]), num_trials=4,
                                   seed=3)
    expected = open_set_report(train=scored["train"], known=scored["test"],
                               unknown=[scored["unknown"]], score="openmax",
                               shifted=scored["test_shifted"], subsets=subsets).metrics
    assert _row(sweep["table"], "openmax")["auroc"] == pytest.approx(expected["auroc"])


def test_parent_run_gets_tables_and_plots(sweep):
    client = MlflowClient(sweep["uri"])
    names = {f.path for f in client.list_artifacts(sweep["parent"], "report")}
    for name in ("results.md", "results.csv", "results.parquet", "openness_curves.png",
                 "results_table.json"):
        assert f"report/{name}" in names
    assert any(n.startswith("report/hist_") for n in names)
    local = client.download_artifacts(sweep["parent"], "report/results_table.json")
    logged = json.loads(open(local).read())
    assert len(logged["data"]) == 4 + len(DETECTORS) + len(EVIDENTIAL_POSTHOC) and "open_maf1" in logged["columns"]
    assert "report/hist_posthoc_soft_unk.png" in names  # one grid for the post-hoc rows


def test_parent_run_gets_the_data_behind_the_plots(sweep):
    """The openness curves and every video's uncertainty, as parquet under `report/`: what
    notebooks/compare_methods.ipynb plots from MLflow alone."""
    client = MlflowClient(sweep["uri"])
    curves = pd.read_parquet(client.download_artifacts(sweep["parent"], f"report/{CURVES_FILE}"))
    scores = pd.read_parquet(client.download_artifacts(sweep["parent"], f"report/{SCORES_FILE}"))
    methods = {"edl", "mc_dropout", "openmax", "softmax", *POSTHOC_METHODS, *(f"edl+{n}" for n in EVIDENTIAL_POSTHOC)}
    assert set(curves["method"]) == set(scores["method"]) == methods

    stores = {s: read_score_store(sweep["dir"] / "stores" / "soft" / f"{s}.parquet")
              for s in SPLITS}
    subsets = draw_unknown_subsets(combine_unknown_classes([stores["unknown"]]), num_trials=4,
                                   seed=3)
    expected = open_set_report(train=stores["train"], known=stores["test"],
                               unknown=[stores["unknown"]], score="msp",
                               shifted=stores["test_shifted"], subsets=subsets)
    curve = curves[curves["method"] == "softmax"]
    for column in ("num_unknown_classes", "openness", "f1_mean", "f1_std"):
        np.testing.assert_allclose(curve[column], getattr(expected.curve, column), err_msg=column)
    # openness 0 (no unknown class) first, then one point per added unknown class
    assert list(curve["num_unknown_classes"]) == list(range(UNKNOWN_CLASSES + 1))

    soft = scores[scores["method"] == "softmax"]
    assert (soft["score"] == "msp").all() and (soft["run"] == "soft").all()
    for split, store in (("known", stores["test"]), ("unknown", stores["unknown"])):
        msp_uncertainty = 1.0 - softmax(store.logits, axis=1).max(axis=1)  # higher = more unknown
        np.testing.assert_allclose(soft.loc[soft["split"] == split, "uncertainty"],  # float32
                                   msp_uncertainty, rtol=0, atol=1e-6, err_msg=split)
    threshold = _row(sweep["table"], "softmax")["threshold"]
    assert soft["threshold"].unique() == pytest.approx([threshold])
    assert scores.groupby("method")["split"].value_counts().to_dict() == {
        (m, s): SPLITS["test" if s == "known" else "unknown"]
        for m in methods for s in ("known", "unknown")}


def test_each_method_logs_the_same_metric_names_to_its_own_run(sweep):
    client = MlflowClient(sweep["uri"])
    children = client.search_runs([sweep["exp"]], f"tags.mlflow.parentRunId = '{sweep['parent']}'")
    trial_runs = [r for r in children if r.data.tags["dear_ray.role"] == "trial"]
    assert sorted(r.info.run_name for r in trial_runs) == ["evid", "soft"]
    assert all(r.info.status == "FINISHED" for r in trial_runs if r.info.run_name == "evid")
    soft = client.get_run(sweep["soft_run"])
    row = _row(sweep["table"], "softmax")
    # metrics about the unknown set carry its name; those of the known splits do not
    assert soft.data.metrics["unk/open_maf1"] == pytest.approx(row["open_maf1"])
    assert soft.data.metrics["unk/auroc_ci_low"] == pytest.approx(row["auroc_ci_low"])
    assert soft.data.metrics["closed_top1"] == pytest.approx(row["closed_top1"])
    assert soft.data.metrics["closed_top1_ci_high"] == pytest.approx(row["closed_top1_ci_high"])
    assert "open_maf1" not in soft.data.metrics and "unk/closed_top1" not in soft.data.metrics
    # its page's description: the method's headline numbers
    note = soft.data.tags["mlflow.note.content"]
    assert note.startswith("**softmax** (soft") and f"AUROC (unk) {100 * row['auroc']:.1f}" in note
    # the post-hoc methods: runs beside the trials (one level in MLflow's runs list and charts),
    # tagged with their trial, over their trial's time
    posthoc = [r for r in children if r.data.tags["dear_ray.role"] == "posthoc" and r.data.tags["trial"] == "soft"]
    assert sorted(r.data.tags["method"] for r in posthoc) == sorted(["mc_dropout", "openmax", *POSTHOC_METHODS])
    assert all(r.data.tags["backbone"] == "i3d_tiny" and r.data.tags["trial"] == "soft"
               and r.info.start_time == soft.info.start_time for r in posthoc)
    # a detector's hyper-parameters: params `detector.<name>` and the tag, as in the table
    react = next(r for r in posthoc if r.data.tags["method"] == "softmax+react")
    chosen = json.loads(_row(sweep["table"], "softmax+react")["detector_params"])
    assert {k: react.data.params[f"detector.{k}"] for k in chosen} == {k: str(v) for k, v in chosen.items()}
    assert json.loads(react.data.tags["detector_params"]) == chosen == {"percentile": 90.0}
    kinds = {r.data.tags["method"]: r.data.tags["method_kind"] for r in [*trial_runs, *posthoc]}
    assert kinds["softmax"] == kinds["edl"] == "trained"
    assert kinds["mc_dropout"] == kinds["openmax"] == "post-hoc"
    assert {kinds[m] for m in POSTHOC_METHODS} == {"detector"}
    # a colour of its own for every method run (the UI's own choice repeats colours)
    # (the trained and post-hoc rows first; detector rows take the rest of the palette, which
    # repeats past its 20 colours)
    colors = [r.data.tags["mlflow.runColor"] for r in [*trial_runs, *posthoc]
              if r.data.tags["method_kind"] != "detector"]
    assert len(set(colors)) == len(colors)
    evidential = [r for r in children if r.data.tags["dear_ray.role"] == "posthoc"
                  and r.data.tags["trial"] == "evid"]
    assert sorted(r.data.tags["method"] for r in evidential) == sorted(f"edl+{n}" for n in EVIDENTIAL_POSTHOC)
    assert all(np.isfinite(r.data.metrics["unk/auroc"]) for r in evidential)
    runs = [*trial_runs, *posthoc]
    # the same names in every run, but the baseline has no `_diff_sig` against itself and OpenMax
    # (argmax over K+1 classes) no threshold
    names = {frozenset(k for k in client.get_run(r.info.run_id).data.metrics
                       if not k.endswith("_diff_sig") and k != "threshold") for r in runs}
    assert len(names) == 1 and {"unk/open_maf1", "unk/auroc", "closed_top1"} <= set(next(iter(names)))
    for run in posthoc:
        method = run.data.tags["method"]
        assert run.data.metrics["unk/auroc"] == pytest.approx(_row(sweep["table"], method)["auroc"])
        assert run.data.metrics["unk/auroc_diff_sig"] == float(_row(sweep["table"], method)["auroc_diff_sig"])


def test_metric_names_carry_the_unknown_set():
    assert metric_name("auroc", "hmdb51") == "hmdb51/auroc"
    assert metric_name("open_maf1_ci_low", "mit_v2") == "mit_v2/open_maf1_ci_low"
    assert metric_name("fpr_at_95_tpr_first_diff_sig", "unknown") == "unknown/fpr_at_95_tpr_first_diff_sig"
    assert metric_name("closed_top1_ci_high", "hmdb51") == "closed_top1_ci_high"
    assert metric_name("threshold", "hmdb51") == "threshold"
    assert metric_name("auroc", "set=1") == "set_1/auroc"  # MLflow refuses '='


def test_metric_names_of_another_protocol_carry_its_prefix():
    assert metric_name("auroc", "hmdb51", "psl") == "psl/hmdb51/auroc"
    assert metric_name("auroc_ci_low", "mit_v2", "psl") == "psl/mit_v2/auroc_ci_low"
    assert metric_name("closed_top1", "hmdb51", "psl") == "psl/closed_top1"
    assert metric_name("auroc", "hmdb51", "dear") == "hmdb51/auroc"


def test_both_protocols_sit_side_by_side_in_the_parent_run(tmp_path, new_tracking_store):
    """`dear-ray report SWEEP --protocol psl` after the sweep's own (dear) report."""
    sweep_dir = tmp_path / "sw2"
    rng = np.random.default_rng(5)
    _write_trial(sweep_dir, "soft", "softmax", rng, classifier=True)
    uri = new_tracking_store(tmp_path)
    exp = ensure_experiment(uri, "sw2", artifact_location=artifact_location_for(uri, tmp_path))
    parent = start_parent_run(uri, exp, sweep="sw2")
    options = dict(tracking_uri=uri, experiment="sw2", num_trials=2, resamples=20, curve_resamples=5,
                   posthoc=("knn",))
    dear = report_sweep(sweep_dir, **options)
    psl = report_sweep(sweep_dir, protocol="psl", **options)
    assert (dear["protocol"] == "dear").all() and (psl["protocol"] == "psl").all()
    assert list(psl["method"]) == list(dear["method"])  # the same rows, other metrics
    assert psl["open_maf1"].isna().all() and dear["open_maf1"].notna().all()
    np.testing.assert_allclose(psl["auroc"], dear["auroc"])  # no HMDB / MiT set here: the same AUROC
    assert (sweep_dir / "report" / "results.md").is_file() and (sweep_dir / "report" / "psl" / "results.md").is_file()
    client = MlflowClient(uri)
    names = {f.path for f in client.list_artifacts(parent, "report/psl")}
    assert {"report/psl/results.md", "report/psl/results_table.json"} <= names
    assert "report/openness_curves.png" in {f.path for f in client.list_artifacts(parent, "report")}
    soft = client.get_run(client.search_runs([exp], "attributes.run_name = 'soft'")[0].info.run_id).data.metrics
    row = _row(psl, "softmax")
    assert soft["psl/unk/auroc"] == pytest.approx(row["auroc"]) and soft["unk/auroc"] == pytest.approx(row["auroc"])
    assert soft["psl/closed_top1"] == pytest.approx(row["closed_top1"]) and "psl/unk/open_maf1" not in soft


def test_report_again_makes_no_new_runs_nor_duplicate_metrics(sweep):
    client = MlflowClient(sweep["uri"])
    before = len(client.search_runs([sweep["exp"]]))
    table = report_sweep(sweep["dir"], tracking_uri=sweep["uri"], experiment="sw", num_trials=4,
                         seed=3)
    pd.testing.assert_frame_equal(table, sweep["table"])
    assert len(client.search_runs([sweep["exp"]])) == before
    assert len(client.get_metric_history(sweep["soft_run"], "unk/open_maf1")) == 1
    local = client.download_artifacts(sweep["parent"], "report/results_table.json")
    assert len(json.loads(open(local).read())["data"]) == len(table)  # replaced, not appended


def test_no_stores_gives_an_empty_table(tmp_path):
    assert find_trial_stores(tmp_path) == {}
    table = report_sweep(tmp_path, tracking_uri=default_tracking_uri(tmp_path), experiment="e")
    assert table.empty


def test_format_results_table_prints_intervals_marks_and_a_legend():
    from dear_ray.tracking.console import format_results_table

    table = pd.DataFrame({
        "method": ["softmax", "dear"], "unknown_set": ["unknown", "unknown"],
        "auroc": [0.75, 0.875], "auroc_ci_low": [0.7, 0.8], "auroc_ci_high": [0.8, 0.9],
        "auroc_diff_sig": pd.array([pd.NA, True], dtype="boolean"),
        "ece": [0.1, float("nan")], "ece_ci_low": [0.05, float("nan")], "ece_ci_high": [0.15, float("nan")],
        "ece_diff_sig": pd.array([pd.NA, False], dtype="boolean"), "threshold": [0.0123456, 0.5]})
    text = format_results_table(table, ["method", "unknown_set", "auroc", "ece", "threshold", "missing"])
    lines = text.splitlines()
    assert lines[0].split() == ["method", "unknown_set", "auroc", "ece", "threshold"]
    assert "75.0 [70.0, 80.0]" in lines[2] and "10.0 [5.0, 15.0]" in lines[2] and "0.01235" in lines[2]
    assert "87.5 [80.0, 90.0] *" in lines[3] and lines[3].split()[-2:] == ["-", "0.5"]
    assert "higher is better: auroc" in text and "lower is better: ece" in text
    assert "* the difference to softmax" in text
    assert format_results_table(pd.DataFrame()) == "(no results: no trial left score stores)"


def test_trials_that_differ_only_in_seed_form_one_setting(tmp_path):
    import yaml

    from dear_ray.metrics.seeds import seed_summary
    from dear_ray.tracking.aggregate import trial_settings

    base = {"name": "sw", "model": {"head": "softmax", "backbone": "i3d_tiny"}, "optim": {"lr": 0.01}}
    configs = {"s0": {**base, "seed": 0}, "s1": {**base, "seed": 1},
               "lr": {**base, "seed": 0, "optim": {"lr": 0.1}}}
    for trial, config in configs.items():
        (tmp_path / f"{trial}.yaml").write_text(yaml.safe_dump(config))
    settings = trial_settings(tmp_path, [*configs, "no_config"])
    assert settings["s0"] == settings["s1"] != settings["lr"] and "no_config" not in settings
    table = pd.DataFrame({"trial": ["s0", "s1", "lr"], "seed": [0, 1, 0], "method": "softmax", "score": "msp",
                          "head": "softmax", "known": "synth", "unknown_set": "unknown", "backbone": "i3d_tiny",
                          "auroc": [0.7, 0.8, 0.5]})
    out = seed_summary(table, settings)
    assert out["num_seeds"].tolist() == [2, 1] and out["auroc"].tolist() == pytest.approx([0.75, 0.5])
    assert out.loc[0, "trials"] == "s0,s1" and out.loc[0, "seeds"] == "0,1"


def short_table_rows(note: str) -> tuple[list[str], list[list[str]]]:
    """The header and the rows (cells split at 2+ spaces) of the description's table block."""
    block = note.split("```")[1].strip("\n").splitlines()
    assert set(block[1]) <= {"-", " "}
    return re.split(r"\s{2,}", block[0]), [re.split(r"\s{2,}", line) for line in block[2:]]


def test_parent_description_is_a_short_table_that_fits_and_links_the_full_one(sweep):
    """MLflow keeps 8000 characters of a description: the parent's is one row per method with
    the headline columns, the detector rows in one line, links to the full table and the view."""
    from mlflow.utils.validation import MAX_TAG_VAL_LENGTH

    from dear_ray.tracking.mlflow_view import VIEW_KEY

    client = MlflowClient(sweep["uri"])
    note = client.get_run(sweep["parent"]).data.tags["mlflow.note.content"]
    lines = note.splitlines()
    assert lines[0] == "**sw: 2 trial(s), 4 method(s)**"
    assert (f"[full table ({len(sweep['table'])} rows, every metric with its interval)](#/experiments/{sweep['exp']}"
            f"/runs/{sweep['parent']}/artifacts/report/results.md?workflowType=machine_learning)"
            in lines[1]) and f"viewStateShareKey={VIEW_KEY}" in lines[1]
    header, rows = short_table_rows(note)
    assert header == ["trial", "method", "top-1", "shifted top-1", "AUROC (unk)", "open maF1 (unk)"]
    assert [r[:2] for r in rows] == [["evid", "edl"], ["soft", "softmax"], ["soft", "mc_dropout"],
                                     ["soft", "openmax"]]
    row = _row(sweep["table"], "openmax")
    assert rows[3][4].startswith(f"{100 * row['auroc']:.1f}")
    assert rows[3][4].endswith("*") == bool(row["auroc_diff_sig"])
    detectors = int(sweep["table"]["method"].str.contains("+", regex=False).sum())
    assert any(line.startswith(f"{detectors} post-hoc detector rows") for line in lines)
    assert len(note) <= MAX_TAG_VAL_LENGTH
    # the saved view: the method runs by AUROC, AUROC and top-1 first
    state = json.loads(json.loads(client.get_experiment(sweep["exp"]).tags[
        f"mlflow.sharedViewState.{VIEW_KEY}"])["state"])
    assert state["columnOrder"][:2] == ["metrics.`unk/auroc`", "metrics.`closed_top1`"]
    shown = client.search_runs([sweep["exp"]], state["searchFilter"])
    assert sorted(r.data.tags["method"] for r in shown) == ["edl", "mc_dropout", "openmax", "softmax"]


def test_short_table_of_a_large_sweep_always_fits_with_whole_rows():
    from mlflow.utils.validation import MAX_TAG_VAL_LENGTH

    from dear_ray.tracking.mlflow_view import short_table

    rows = [{"trial": f"backbone_{b}_seed_{s}_{m}", "method": m, "unknown_set": u,
             "closed_top1": 0.9, "shifted_top1": 0.5, "auroc": 0.8, "open_maf1": 0.7,
             "auroc_diff_sig": True}
            for b in range(4) for s in range(10) for m in ("softmax", "bnn", "rpl", "dear", "edl")
            for u in ("hmdb51", "mit_v2")]
    text = short_table(pd.DataFrame(rows), title="big", notes=["a warning"])
    assert len(text) <= MAX_TAG_VAL_LENGTH and "> a warning" in text.splitlines()
    header, table_rows = short_table_rows(text)
    # one row per method: the two unknown sets are columns
    assert header[2:] == ["top-1", "shifted top-1", "AUROC (hmdb51)", "open maF1 (hmdb51)",
                          "AUROC (mit_v2)", "open maF1 (mit_v2)"]
    whole = [r for r in table_rows if r[0].startswith("backbone_")]
    assert 40 < len(whole) < 200 and all(r[2:] == ["90.0", "50.0", "80.0 *", "70.0", "80.0 *", "70.0"]
                                         for r in whole)
    assert re.fullmatch(r"\.\.\. \d+ more rows: the full table", " ".join(table_rows[-1]))
    assert text.splitlines()[-1].startswith("percent, higher is better")
