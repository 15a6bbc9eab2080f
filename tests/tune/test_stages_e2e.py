"""Sweeps with stages on real Ray and MLflow: the order and the checkpoint handed on, a failed
source skipping its dependants, and a resume after the second stage was killed. Slow."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import yaml
from mlflow import MlflowClient

from dear_ray.tune import run_sweep
from dear_ray.tune.local_ray import own_processes, private_temp_dir
from dear_ray.tune.stage_runner import last_checkpoint
from dear_ray.tune.sweep import SweepError, parse_sweep

pytestmark = pytest.mark.slow


@pytest.fixture(autouse=True)
def _no_outside_tracking(monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)


def _base(synth, run_dir):
    return {"data": {"data_root": str(synth), "clip_len": 8, "crop_size": 32, "scale_short": 32,
                     "batch_size": 6},
            "model": {"backbone": "i3d_tiny"},
            "optim": {"epochs": 1, "lr": 0.01},
            "eval": {"stochastic_passes": 2, "every_n_epochs": 0},
            "resources": {"num_workers": 0, "cpus_per_worker": 0.5},
            "tracking": {"run_dir": str(run_dir)}}


def _children(result) -> dict:
    client = MlflowClient(result.tracking_uri)
    runs = client.search_runs([result.experiment_id],
                              f"tags.mlflow.parentRunId = '{result.parent_run_id}' and "
                              "tags.`dear_ray.role` = 'trial'")
    return {r.info.run_name: r for r in runs}


def test_stages_run_in_order_hand_on_the_checkpoint_and_skip_after_a_failed_source(
        sweep_synth, tmp_path, capsys):
    raw = {"name": "pipe", "base": _base(sweep_synth, tmp_path / "runs"),
           "stages": [
               {"name": "pre", "cases": [
                   {"name": "ok", "model.head": "softmax"},
                   # dies at its first epoch (a worker group: the injected fault needs one)
                   {"name": "bad", "debug.fail_at_epoch": 0, "resources.num_workers": 1}]},
               {"name": "ft", "cases": [
                   {"name": "x", "model.head": "edl", "model.pretrained": {"from": "pre/ok"}},
                   {"name": "y", "model.head": "edl", "model.pretrained": {"from": "pre/bad"}}]}],
           "max_concurrent_trials": 2, "trial_resources": {"CPU": 0.25}, "ray": {"num_cpus": 2}}
    result = run_sweep(parse_sweep(raw))
    out = capsys.readouterr().out
    assert list(result.failed) == ["bad"]
    assert result.skipped == {"y": "its source pre/bad failed"}
    assert "[y] SKIPPED: it starts from pre/bad, which failed" in out
    assert "SKIPPED y: its source pre/bad failed" in result.summary()
    assert out.index("stage pre: 2 trial(s)") < out.index("stage ft: 1 trial(s): x (from pre/ok)")
    # the report covers the last stage's trials only
    assert set(result.table["trial"]) == {"x"}

    checkpoint = last_checkpoint(result.sweep_dir, "ok")
    assert checkpoint is not None
    state = json.loads((result.sweep_dir / "trials.json").read_text())
    assert state["x"]["model"]["pretrained"] == str(checkpoint)
    assert "y" not in state  # never scheduled
    runs = _children(result)
    assert set(runs) == {"ok", "bad", "x"}
    assert runs["x"].data.params["pretrained_from"] == str(checkpoint)
    assert runs["x"].data.tags["pretrained_trial"] == "pre/ok"
    assert (runs["ok"].data.tags["stage"], runs["x"].data.tags["stage"]) == ("pre", "ft")
    assert runs["x"].info.start_time >= runs["ok"].info.end_time  # stage after stage
    assert (runs["ok"].info.status, runs["x"].info.status) == ("FINISHED", "FINISHED")


def test_resume_after_a_killed_second_stage_reuses_the_first(sweep_synth, tmp_path, capsys):
    raw = {"name": "killed", "base": _base(sweep_synth, tmp_path / "runs"),
           "stages": [
               {"name": "pre", "cases": [{"name": "a", "model.head": "softmax"}]},
               {"name": "ft", "base": {"optim.epochs": 4, "model.pretrained": {"from": "pre/a"}},
                "cases": [{"name": "b", "model.head": "edl"}]}],
           "trial_resources": {"CPU": 0.25}, "ray": {"num_cpus": 2}}
    sweep = tmp_path / "killed.yaml"
    sweep.write_text(yaml.safe_dump(raw))
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "MLFLOW_TRACKING_URI")}
    log = tmp_path / "out.txt"
    proc = subprocess.Popen([sys.executable, "-m", "dear_ray.cli", "sweep", str(sweep)],
                            stdout=log.open("w"), stderr=subprocess.STDOUT, env=env)
    temp = private_temp_dir(tmp_path / "runs" / "killed")
    try:
        deadline = time.monotonic() + 300
        while "[b] epoch 1/4" not in log.read_text():
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, "stage ft never trained"
            time.sleep(0.5)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        deadline = time.monotonic() + 30
        while own_processes(temp) and time.monotonic() < deadline:
            time.sleep(0.5)
    finally:
        if proc.poll() is None:
            proc.kill()
    spec = parse_sweep(raw)
    stores_a = sorted((spec.sweep_dir / "stores" / "a").glob("*.parquet"))
    assert stores_a
    mtimes = [p.stat().st_mtime_ns for p in stores_a]

    resumed = run_sweep(spec, resume=True)
    assert resumed.failed == {} and resumed.reused == ["a"] and resumed.trials == ["a", "b"]
    assert "reusing 1 finished trial(s) of an earlier run: a" in capsys.readouterr().out
    assert [p.stat().st_mtime_ns for p in stores_a] == mtimes  # a was not trained again
    assert set(resumed.table["trial"]) == {"b"}
    runs = _children(resumed)
    assert runs["b"].info.status == "FINISHED"
    assert runs["b"].data.params["pretrained_from"] == str(last_checkpoint(spec.sweep_dir, "a"))

    # a changed pretraining trial invalidates the trial that starts from it, and says so
    raw["stages"][0]["cases"][0]["optim.lr"] = 0.02
    with pytest.raises(SweepError) as err:
        run_sweep(parse_sweep(raw), resume=True)
    assert "a: optim.lr: 0.01 -> 0.02" in str(err.value)
    assert "b: it starts from pre/a, which trains again" in str(err.value)
