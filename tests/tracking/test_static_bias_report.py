"""The sweep report with static-bias stores (issue 12): the rows, the MLflow metrics, the table."""

from __future__ import annotations

import numpy as np
import pytest
from mlflow import MlflowClient

from dear_ray.metrics.static_bias import STATIC_BIAS_KEYS
from dear_ray.scores import StoreMeta, compute_scores, write_score_store
from dear_ray.tracking.aggregate import metric_name, mlflow_metrics, report_sweep
from dear_ray.tracking.mlflow_runs import artifact_location_for, ensure_experiment, start_parent_run

K = 3
SIZES = {"train": 30, "test": 15, "test_shifted": 15, "unknown": 12, "test_scuba": 15, "test_scufo": 15}


def _trial(sweep_dir, trial: str, head: str, splits, rng) -> None:
    for split in splits:
        n = SIZES[split]
        labels = np.arange(n) % (4 if split == "unknown" else K)
        strength = {"unknown": 0.0, "test_scufo": 0.5}.get(split, 4.0)
        logits = rng.normal(size=(n, K)) + strength * np.eye(K)[labels % K]
        ids = [f"v{i}" if split.startswith("test_scu") else f"{split}_{i}" for i in range(n)]
        write_score_store(sweep_dir / "stores" / trial / f"{split}.parquet", video_ids=ids, labels=labels,
                          logits=logits, features=None, sample_logits=None, scores=compute_scores(head, logits),
                          meta=StoreMeta(split=split, dataset="unk" if split == "unknown" else "synth",
                                         num_known=K, head=head, checkpoint=f"{trial}/ckpt", run=trial))


def test_rows_and_runs_carry_the_static_bias_metrics_only_where_the_stores_are(tmp_path, new_tracking_store):
    sweep_dir = tmp_path / "sw"
    rng = np.random.default_rng(0)
    _trial(sweep_dir, "with", "edl", SIZES, rng)
    _trial(sweep_dir, "without", "edl", ("train", "test", "test_shifted", "unknown"), rng)
    uri = new_tracking_store(tmp_path)
    exp = ensure_experiment(uri, "sw", artifact_location=artifact_location_for(uri, tmp_path))
    start_parent_run(uri, exp, sweep="sw")
    table = report_sweep(sweep_dir, tracking_uri=uri, experiment="sw", num_trials=2, resamples=50,
                         curve_resamples=5)
    rows = {r["trial"]: r for r in table.to_dict("records")}
    assert set(rows) == {"with", "without"}
    for key in STATIC_BIAS_KEYS:
        assert 0.0 <= rows["with"][key] <= 1.0 and np.isnan(rows["without"][key])
        assert rows["with"][f"{key}_ci_low"] <= rows["with"][key] <= rows["with"][f"{key}_ci_high"]
    assert rows["with"]["scuba_top1"] > rows["with"]["scufo_top1"]  # the stills carry little signal
    # metrics of the known splits: no unknown-set prefix; absent ones are not logged at all
    assert metric_name("contrast_acc", "unk") == "contrast_acc"
    assert metric_name("scufo_top1_ci_low", "unk") == "scufo_top1_ci_low"
    client = MlflowClient(uri)
    runs = {r.info.run_name: r for r in client.search_runs([exp]) if r.info.run_name in ("with", "without")}
    logged = runs["with"].data.metrics
    assert logged["contrast_acc"] == pytest.approx(rows["with"]["contrast_acc"])
    assert logged["scuba_top1_ci_high"] == pytest.approx(rows["with"]["scuba_top1_ci_high"])
    assert not any(k.startswith(("scuba", "scufo", "contrast")) for k in runs["without"].data.metrics)
    assert not any(k.startswith("scuba") for k in mlflow_metrics(rows["without"]))
    header = (sweep_dir / "report" / "results.md").read_text().splitlines()[0]
    assert "| trial |" in header and all(key in header for key in STATIC_BIAS_KEYS)
