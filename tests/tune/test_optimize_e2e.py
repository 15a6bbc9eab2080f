"""A multi-objective sweep end to end: Optuna samples 6 trials of a 2-parameter search on tiny
data towards two objectives; the report's Pareto table holds exactly the trials that no other
trial beats on both (found here by brute force), with the values the aggregator's results table
gives each trial.

Starts (and stops) a local Ray instance: marked slow.
"""

from __future__ import annotations

import itertools

import pandas as pd
import pytest
import yaml
from mlflow import MlflowClient

from dear_ray.cli import main
from dear_ray.tune import run_sweep
from dear_ray.tune.sweep import parse_sweep

pytestmark = pytest.mark.slow

OBJECTIVES = {"closed_top1": "max", "auroc": "max"}


def _sweep(data_root, run_dir) -> dict:
    return {
        "name": "tradeoff",
        "base": {
            "data": {"dataset": "synth", "data_root": str(data_root), "clip_len": 8,
                     "frame_interval": 2, "scale_short": 32, "crop_size": 32, "batch_size": 6,
                     "num_workers": 0, "test_views": {}},
            "model": {"backbone": "r3d18_tiny", "head": "edl"},
            "optim": {"epochs": 1, "warmup_epochs": 0},
            "eval": {"every_n_epochs": 0},
            "resources": {"num_workers": 0, "cpus_per_worker": 0.75, "use_gpu": False},
            "checkpoint": {"every_n_epochs": 1, "num_to_keep": 1},
            "tracking": {"experiment": "tradeoff", "run_dir": str(run_dir)},
        },
        "grid": {"model.head": ["edl"]},
        "search": {"optim.lr": {"type": "loguniform", "low": 1.0e-4, "high": 1.0e-1},
                   "model.dropout": {"type": "uniform", "low": 0.0, "high": 0.9}},
        "num_samples": 6,
        "optimize": {"algorithm": "optuna", "objectives": OBJECTIVES, "seed": 3},
        "max_concurrent_trials": 2, "trial_resources": {"CPU": 0.25}, "ray": {"num_cpus": 2},
    }


def _dominates(a: dict, b: dict) -> bool:
    return all(a[k] >= b[k] for k in OBJECTIVES) and any(a[k] > b[k] for k in OBJECTIVES)


def test_an_optuna_sweep_ends_with_the_pareto_front_of_its_trials(sweep_synth, tmp_path,
                                                                 monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    raw = _sweep(sweep_synth, tmp_path / "runs")
    result = run_sweep(parse_sweep(raw))
    assert result.failed == {}
    assert len(result.trials) == 6
    pareto = result.pareto
    assert sorted(pareto["trial"]) == sorted(result.trials)
    # every trial sampled its own point of the 2-parameter space
    points = {(r["param:optim.lr"], r["param:model.dropout"]) for _, r in pareto.iterrows()}
    assert len(points) == 6
    # the objectives are the report's own numbers for each trial's method row
    own = result.table[result.table["method"] == "edl"].set_index("trial")
    values = {r["trial"]: {k: r[k] for k in OBJECTIVES} for _, r in pareto.iterrows()}
    for trial, v in values.items():
        assert v["closed_top1"] == pytest.approx(own.loc[trial, "closed_top1"], abs=1e-12)
        assert v["auroc"] == pytest.approx(own.loc[trial, "auroc"], abs=1e-12)
    brute = {t for t in values
             if not any(_dominates(values[o], values[t]) for o in values if o != t)}
    assert set(pareto.loc[pareto["on_front"], "trial"]) == brute
    assert brute  # a front is never empty
    assert all(not _dominates(values[a], values[b])
               for a, b in itertools.permutations(brute, 2))
    # logged to the sweep's parent run
    client = MlflowClient(result.tracking_uri)
    logged = {f.path for f in client.list_artifacts(result.parent_run_id, "report/pareto")}
    assert {"report/pareto/pareto.csv", "report/pareto/pareto.md",
            "report/pareto/pareto.png"} <= logged
    run = client.get_run(result.parent_run_id)
    assert run.data.metrics["pareto_trials"] == len(brute)
    children = client.search_runs([result.experiment_id],
                                  f"tags.mlflow.parentRunId = '{result.parent_run_id}'")
    tags = {r.info.run_name: r.data.tags.get("pareto_front") for r in children
            if r.info.run_name in values}
    assert tags == {t: "true" if t in brute else "false" for t in values}
    # the console's closing line still reads the trial's test top-1 from its last result
    assert all("test_top1" in r for r in _last_results(result))
    # `dear-ray report` on the sweep file writes the same front again
    path = tmp_path / "tradeoff.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    pareto_csv = result.sweep_dir / "report" / "pareto" / "pareto.csv"
    pareto_csv.unlink()
    assert main(["report", str(path)]) == 0
    assert set(pd.read_csv(pareto_csv).query("on_front")["trial"]) == brute


def _last_results(result) -> list[dict]:
    from ray.tune import ExperimentAnalysis

    tune_dir = result.sweep_dir / "ray" / "_tune"
    return [dict(df.iloc[-1]) for df in ExperimentAnalysis(str(tune_dir)).trial_dataframes.values()]
