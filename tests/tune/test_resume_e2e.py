"""Re-running, resuming and killing behave as a user expects (issue 15): real Ray, real MLflow.

Each test starts (and stops) private local Ray instances: marked slow.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from mlflow import MlflowClient

from dear_ray.cli import main
from dear_ray.tune.local_ray import INSTANCE_VARIABLE, own_processes, private_temp_dir
from dear_ray.tune import run_sweep
from dear_ray.tune.sweep import SweepError, parse_sweep, restrict_sweep

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _no_outside_tracking(monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)


def _base(synth, run_dir, epochs=1):
    return {"data": {"data_root": str(synth), "clip_len": 8, "crop_size": 32, "scale_short": 32,
                     "batch_size": 6},
            "model": {"backbone": "i3d_tiny"},
            "optim": {"epochs": epochs, "lr": 0.01},
            "eval": {"stochastic_passes": 2, "every_n_epochs": 0},
            "resources": {"num_workers": 1, "cpus_per_worker": 1},
            "tracking": {"run_dir": str(run_dir)}}


def test_two_train_runs_with_different_settings_are_two_finished_runs(sweep_synth, tmp_path,
                                                                      capsys):
    cfg = {"name": "single", **_base(sweep_synth, tmp_path / "runs")}
    path = tmp_path / "single.yaml"
    path.write_text(yaml.safe_dump(cfg))
    assert main(["train", str(path)]) == 0
    assert main(["train", str(path), "--set", "optim.lr=0.02"]) == 0
    out = capsys.readouterr().out
    assert "new run single-2" in out and "[single-2] epoch 1/1" in out
    client = MlflowClient(f"sqlite:///{tmp_path / 'runs' / 'mlflow.db'}")
    exp = client.get_experiment_by_name("single")
    # the two runs (their post-hoc methods are nested runs named <run>/<method>)
    runs = {r.info.run_name: r for r in client.search_runs([exp.experiment_id])
            if "/" not in r.info.run_name}
    assert sorted(runs) == ["single", "single-2"]
    assert {r.info.status for r in runs.values()} == {"FINISHED"}
    assert (runs["single"].data.params["optim.lr"], runs["single-2"].data.params["optim.lr"]) == \
        ("0.01", "0.02")
    # a single run gets the open-set report of a sweep trial
    for run in runs.values():
        assert {"unknown/auroc", "unknown/open_maf1", "closed_top1"} <= set(run.data.metrics)
    assert main(["train", str(path), "--resume"]) == 2
    assert "already finished" in capsys.readouterr().err


def test_resume_runs_added_trials_and_refuses_changed_ones_with_the_diff(sweep_synth, tmp_path,
                                                                         capsys):
    raw = {"name": "grow", "base": _base(sweep_synth, tmp_path / "runs"),
           "cases": [{"name": "a", "model.head": "softmax"}, {"name": "b", "model.head": "edl"}],
           "max_concurrent_trials": 1}
    spec = parse_sweep(raw)
    first = run_sweep(restrict_sweep(spec, trials=["a"]))
    assert first.failed == {} and first.trials == ["a"]
    stores_a = sorted((spec.sweep_dir / "stores" / "a").glob("*.parquet"))
    mtimes = [p.stat().st_mtime_ns for p in stores_a]

    grown = run_sweep(spec, resume=True)
    assert grown.failed == {} and grown.reused == ["a"] and sorted(grown.trials) == ["a", "b"]
    assert [p.stat().st_mtime_ns for p in stores_a] == mtimes  # a was not trained again
    assert "reusing 1 finished trial(s) of an earlier run: a" in capsys.readouterr().out
    assert set(grown.table["trial"]) == {"a", "b"}

    longer = restrict_sweep(spec, overrides={"optim.epochs": 2})
    with pytest.raises(SweepError) as err:
        run_sweep(longer, resume=True)
    assert "a: optim.epochs: 1 -> 2" in str(err.value) and "--restart-changed" in str(err.value)
    assert "--set tracking.run_dir=<another folder>" in str(err.value)  # what also works

    client = MlflowClient(grown.tracking_uri)
    children = client.search_runs([grown.experiment_id],
                                  f"tags.mlflow.parentRunId = '{grown.parent_run_id}' and "
                                  "tags.`dear_ray.role` = 'trial'")
    assert sorted(r.info.run_name for r in children) == ["a", "b"]
    assert {r.info.status for r in children} == {"FINISHED"}
    parent = client.get_run(grown.parent_run_id)
    assert re.search(r"^a\s+softmax\s", parent.data.tags["mlflow.note.content"], re.M)  # short table
    capsys.readouterr()

    # one trial trained again for 2 epochs beside the other's 1: the report says it mixes them
    part = run_sweep(restrict_sweep(spec, overrides={"optim.epochs": 2}, trials=["a"]),
                     resume=True, restart_changed=True)
    assert part.failed == {} and set(part.table["trial"]) == {"a", "b"}
    note = ("the trials in this table were trained with different optim.epochs although the sweep "
            "gives them the same: 2 (a); 1 (b)")
    assert part.notes == [note]
    assert f"warning: {note}" in capsys.readouterr().out
    assert "1 trial(s) run now, 0 failed; the table has 2 trial(s)" in part.summary()
    assert f"> {note}" in client.get_run(part.parent_run_id).data.tags["mlflow.note.content"]


def test_a_killed_sweep_leaves_no_ray_process_of_its_own(sweep_synth, tmp_path):
    sweep = tmp_path / "kill.yaml"
    sweep.write_text(yaml.safe_dump({"name": "kill", "base": _base(sweep_synth, tmp_path / "runs",
                                                                   epochs=3),
                                     "grid": {"model.head": ["softmax"]}}))
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "MLFLOW_TRACKING_URI")}
    log = (tmp_path / "out.txt").open("w")
    proc = subprocess.Popen([sys.executable, "-m", "dear_ray.cli", "sweep", str(sweep)],
                            stdout=log, stderr=subprocess.STDOUT, env=env)
    temp = private_temp_dir(tmp_path / "runs" / "kill")
    try:
        deadline = time.monotonic() + 240
        while "started" not in (tmp_path / "out.txt").read_text():
            assert proc.poll() is None, (tmp_path / "out.txt").read_text()
            assert time.monotonic() < deadline, "the trial never started"
            time.sleep(1)
        assert len(own_processes(temp)) >= 3  # GCS, raylet, agents, workers...
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        deadline = time.monotonic() + 30
        while own_processes(temp) and time.monotonic() < deadline:
            time.sleep(0.5)
        left = [(p.pid, p.name()) for p in own_processes(temp)]
        assert left == [], f"processes of the killed sweep's Ray still alive: {left}"
    finally:
        if proc.poll() is None:
            proc.kill()
        for p in own_processes(temp):
            p.kill()
    assert INSTANCE_VARIABLE not in os.environ


def test_two_sweeps_started_together_on_a_new_sqlite_store_both_finish(sweep_synth, tmp_path):
    store = tmp_path / "shared" / "mlflow.db"
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env["MLFLOW_TRACKING_URI"] = f"sqlite:///{store}"
    procs = []
    for name in ("left", "right"):
        path = tmp_path / f"{name}.yaml"
        base = _base(sweep_synth, tmp_path / name)
        base["resources"]["cpus_per_worker"] = 0.5
        path.write_text(yaml.safe_dump({"name": name, "base": base,
                                        "grid": {"model.head": ["edl"]},
                                        "trial_resources": {"CPU": 0.25}, "ray": {"num_cpus": 1}}))
        procs.append(subprocess.Popen([sys.executable, "-m", "dear_ray.cli", "sweep", str(path)],
                                      stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env,
                                      text=True))
    outs = [p.communicate(timeout=480)[0] for p in procs]
    for proc, out in zip(procs, outs, strict=True):
        assert proc.returncode == 0, out[-3000:]
        assert "already exists" not in out
    client = MlflowClient(env["MLFLOW_TRACKING_URI"])
    for name in ("left", "right"):
        exp = client.get_experiment_by_name(name)
        assert exp is not None
        statuses = {r.info.status for r in client.search_runs([exp.experiment_id])}
        assert statuses == {"FINISHED"}


def test_ctrl_c_ends_a_train_run_killed_says_how_to_resume_and_leaves_no_ray_process(
        sweep_synth, tmp_path):
    """Ctrl-C (SIGINT to the foreground process group) during `dear-ray train` on a worker
    group: exit status 130, one line saying the run was stopped and how `--resume` continues it,
    the MLflow run KILLED, nothing of its private Ray left."""
    cfg = {"name": "cc", **_base(sweep_synth, tmp_path / "runs", epochs=30)}
    path = tmp_path / "cc.yaml"
    path.write_text(yaml.safe_dump(cfg))
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "MLFLOW_TRACKING_URI")}
    out = (tmp_path / "out.txt").open("w")
    proc = subprocess.Popen([sys.executable, "-m", "dear_ray.cli", "train", str(path)], stdout=out,
                            stderr=subprocess.STDOUT, env=env, start_new_session=True)
    temp = private_temp_dir(tmp_path / "runs" / "cc" / "ray" / "cc")
    try:
        deadline = time.monotonic() + 240
        while "[cc] epoch 2/30" not in (tmp_path / "out.txt").read_text():
            assert proc.poll() is None, (tmp_path / "out.txt").read_text()
            assert time.monotonic() < deadline, "no epoch line"
            time.sleep(0.5)
        os.killpg(proc.pid, signal.SIGINT)
        assert proc.wait(timeout=60) == 130
        text = (tmp_path / "out.txt").read_text()
        assert ("dear-ray: interrupted: training run cc stopped (MLflow run KILLED); "
                f"`dear-ray train {path} --resume` continues it after epoch ") in text
        # the workers' output (Ray Train's report dumps, the preemption watcher's core-worker
        # error) stays in Ray's log files: the console has the epoch lines
        assert "Traceback" not in text and "TrainingReport(" not in text
        assert "PreemptionWatcher" not in text and "[cc] epoch 1/30  loss " in text
        deadline = time.monotonic() + 30
        while own_processes(temp) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert own_processes(temp) == []
    finally:
        if proc.poll() is None:
            proc.kill()
        for p in own_processes(temp):
            p.kill()
    client = MlflowClient(f"sqlite:///{tmp_path / 'runs' / 'mlflow.db'}")
    (run,) = client.search_runs([client.get_experiment_by_name("cc").experiment_id])
    assert run.info.status == "KILLED"
