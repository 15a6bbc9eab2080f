"""End to end: a 2-trial sweep on tiny synthetic videos through Ray Tune, Ray Train and MLflow.

Starts (and stops) a local Ray instance: marked slow.
"""

from __future__ import annotations

import json
import re

import pytest
from mlflow import MlflowClient

from dear_ray.tracking.aggregate import metric_name
from dear_ray.tune import run_sweep
from dear_ray.tune.sweep import SweepError, parse_sweep

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def synth(sweep_synth):
    return sweep_synth


def _spec(synth, run_dir):
    return parse_sweep({
        "name": "e2e",
        "base": {
            "data": {"data_root": str(synth), "clip_len": 8, "crop_size": 32, "scale_short": 32,
                     "batch_size": 6},
            "model": {"backbone": "i3d_tiny"},
            "optim": {"epochs": 2, "lr": 0.01},
            "eval": {"stochastic_passes": 3, "every_n_epochs": 0},
            "resources": {"num_workers": 1, "cpus_per_worker": 1},
            "tracking": {"run_dir": str(run_dir)},
        },
        "grid": {"model.head": ["softmax", "edl"]},
        "max_concurrent_trials": 1,
    })


def test_two_trial_sweep_logs_parent_table_and_child_metrics_then_resumes(synth, tmp_path,
                                                                         monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    spec = _spec(synth, tmp_path / "runs")
    result = run_sweep(spec)

    assert result.failed == {}
    assert result.tracking_uri == f"sqlite:///{(tmp_path / 'runs').resolve()}/mlflow.db"
    assert sorted(result.trials) == ["head-edl", "head-softmax"]
    table = result.table
    assert {"softmax", "mc_dropout", "edl"} <= set(table["method"])
    assert set(table["trial"]) == {"head-edl", "head-softmax"}
    for col in ("open_maf1", "auroc", "closed_top1"):
        assert table[col].between(0.0, 1.0).all(), col

    client = MlflowClient(result.tracking_uri)
    parent = client.get_run(result.parent_run_id)
    assert parent.info.status == "FINISHED" and parent.info.run_name == "e2e"
    artifacts = {f.path for f in client.list_artifacts(result.parent_run_id, "report")}
    assert {"report/results.md", "report/results.csv", "report/results.parquet",
            "report/results_table.json", "report/openness_curves.png"} <= artifacts
    _check_the_mlflow_view(client, result)
    children = [r for r in client.search_runs(
        [result.experiment_id], f"tags.mlflow.parentRunId = '{result.parent_run_id}'")
        if r.data.tags["dear_ray.role"] == "trial"]
    assert sorted(r.info.run_name for r in children) == ["head-edl", "head-softmax"]
    # each trial's run opened when its trial started: one at a time, the second run starts
    # after the first ended (not both at the sweep's start, queue time counted)
    first, second = sorted(children, key=lambda r: r.info.start_time)
    assert second.info.start_time >= first.info.end_time
    for run in children:
        head = run.data.tags["head"]
        assert run.info.status == "FINISHED"
        assert run.data.tags["trial"] == run.info.run_name and run.data.tags["sweep"] == "e2e"
        assert run.data.params["model.head"] == head
        row = table[(table["trial"] == run.info.run_name) & (table["method"] == head)].iloc[0]
        for key in ("open_maf1", "auroc", "closed_top1"):  # unknown-set metrics: "<set>/<key>"
            assert run.data.metrics[metric_name(key, "unknown")] == pytest.approx(row[key])
        steps = [m.step for m in client.get_metric_history(run.info.run_id, "train_loss")]
        assert sorted(steps) == [0, 1]
        names = {f.path for f in client.list_artifacts(run.info.run_id)}
        assert "config.yaml" in names

    # every process of a trial marked its steps; one at a time, Tune reused the first trial's
    # driver process for the second
    from dear_ray import timeline

    marks = {t: timeline.read(result.sweep_dir, t) for t in result.trials}
    for events in marks.values():
        names = [e["event"] for e in events]
        assert names[0] == "trial_driver_start" and names[-1] == "trial_driver_done"
        assert {"train_fit_start", "worker_start", "evaluation_done", "train_fit_done"} <= set(names)
        assert any(e.get("rank") == 0 for e in events if e["event"] == "worker_ready")
    drivers = {t: {e["pid"] for e in events if e["event"].startswith("trial_driver")}
               for t, events in marks.items()}
    assert drivers["head-edl"] == drivers["head-softmax"] and len(drivers["head-edl"]) == 1

    # a second plain run refuses to overwrite; --resume re-runs nothing and duplicates nothing
    with pytest.raises(SweepError, match="--resume"):
        run_sweep(spec)
    stores = sorted((spec.sweep_dir / "stores").rglob("*.parquet"))
    mtimes = [p.stat().st_mtime_ns for p in stores]
    again = run_sweep(spec, resume=True)
    assert again.parent_run_id == result.parent_run_id and again.failed == {}
    assert [p.stat().st_mtime_ns for p in stores] == mtimes
    children = client.search_runs([result.experiment_id],
                                  f"tags.mlflow.parentRunId = '{result.parent_run_id}' and "
                                  "tags.`dear_ray.role` = 'trial'")
    assert len(children) == 2
    for run in children:
        assert len(client.get_metric_history(run.info.run_id, "train_loss")) == 2


def _check_the_mlflow_view(client, result):
    """What the MLflow UI shows first: the parent's short table, the saved view's runs and charts."""
    from mlflow.utils.validation import MAX_TAG_VAL_LENGTH

    from dear_ray.tracking.mlflow_view import VIEW_KEY

    parent = client.get_run(result.parent_run_id)
    assert set(parent.data.metrics) == {"failed_trials"}  # no 40 sections of single bars
    note = parent.data.tags["mlflow.note.content"]
    assert len(note) <= MAX_TAG_VAL_LENGTH and "[full table (" in note
    header = note.split("```")[1].strip().splitlines()[0].split()
    assert header == ["trial", "method", "top-1", "shifted", "top-1", "AUROC", "open", "maF1"]
    for _, row in result.table.iterrows():  # every method of the table, in the short one
        shown = re.search(rf"^{row['trial']}\s+{re.escape(row['method'])}\s", note, re.M)
        assert bool(shown) == ("+" not in row["method"]), row["method"]
    state = json.loads(json.loads(client.get_experiment(result.experiment_id).tags[
        f"mlflow.sharedViewState.{VIEW_KEY}"])["state"])
    shown = client.search_runs([result.experiment_id], state["searchFilter"])
    assert {r.data.tags["method"] for r in shown} >= {"softmax", "mc_dropout", "edl"}
    keys = [c["metricKey"] for c in state["compareRunCharts"]]
    assert keys[:2] == ["unknown/auroc", "closed_top1"]  # AUROC and top-1 side by side
    assert all(k in r.data.metrics for r in shown for k in keys)
    assert state["orderByKey"] == "metrics.`unknown/auroc`"
    assert len({r.data.tags["mlflow.runColor"] for r in shown}) == len(shown)


def test_failed_trial_is_reported_and_finished_trials_still_aggregated(synth, tmp_path,
                                                                     monkeypatch, capfd):
    """A trial whose data has too many undecodable videos fails: one console line and one MLflow
    `error` tag name the cause (not the last line of its message, no Ray traceback); the other
    trial is aggregated."""
    import shutil

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    bad = tmp_path / "bad_data"
    shutil.copytree(synth, bad)
    for rel in [line.split()[0] for line in (bad / "train.txt").read_text().splitlines()[:2]]:
        (bad / rel).write_bytes((bad / rel).read_bytes()[:300])
    spec = parse_sweep({
        "name": "partial",
        "base": _spec(synth, tmp_path / "runs").base.override({"optim.epochs": 1}).to_dict(),
        "cases": [{"name": "ok", "model.head": "edl"},
                  {"name": "broken", "model.head": "edl", "data.data_root": str(bad)}],
        "max_concurrent_trials": 1,
    })
    result = run_sweep(spec)
    # the run stops at the first bad video over 5%: 1 or 2 of 18, as the loader meets them
    cause = result.failed["broken"]
    assert list(result.failed) == ["broken"] and re.fullmatch(
        r"TooManyBadVideosError: [12] of 18 videos in train \(rank 0\) could not be decoded "
        r"\((5\.6|11\.1)%; max_bad_fraction=5\.0%\) \(the videos: "
        + re.escape(str(spec.sweep_dir / "bad_videos" / "broken")) + r"\)", cause), cause
    # the edl trial's rows: its own and its Dirichlet-score detector rows (edl+mpu, ...)
    assert set(result.table["trial"]) == {"ok"} and "edl" in set(result.table["method"])
    out, err = capfd.readouterr()
    assert f"[broken] FAILED: {cause} (2/2 trials done; error file: " in out
    assert "Traceback" not in out + err and "Trial task failed" not in out + err
    assert "Trials did not complete" not in out + err and "Configuration for experiment" not in out
    client = MlflowClient(result.tracking_uri)
    runs = {r.info.run_name: r for r in client.search_runs(
        [result.experiment_id], f"tags.mlflow.parentRunId = '{result.parent_run_id}'")}
    assert runs["broken"].info.status == "FAILED" and runs["broken"].data.tags["error"] == cause
    assert runs["ok"].info.status == "FINISHED" and "unknown/open_maf1" in runs["ok"].data.metrics
    assert client.get_run(result.parent_run_id).info.status == "FAILED"


def test_in_process_trials_report_every_epoch_to_tune_and_keep_their_checkpoints(synth, tmp_path,
                                                                              monkeypatch):
    """`resources.num_workers: 0`: each trial's loop runs in its Tune trial process (no Ray Train
    worker group), two at a time on the 2-CPU cluster; every epoch reaches Tune and MLflow once,
    the checkpoints stay in the trial's run folder."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    base = _spec(synth, tmp_path / "runs").base.override({
        "resources.num_workers": 0, "resources.cpus_per_worker": 0.75}).to_dict()
    spec = parse_sweep({"name": "inproc", "base": base, "grid": {"model.head": ["softmax", "edl"]},
                        "max_concurrent_trials": 2, "trial_resources": {"CPU": 0.25},
                        "ray": {"num_cpus": 2}})
    result = run_sweep(spec)
    assert result.failed == {} and set(result.table["trial"]) == {"head-edl", "head-softmax"}
    client = MlflowClient(result.tracking_uri)
    children = client.search_runs([result.experiment_id],
                                  f"tags.mlflow.parentRunId = '{result.parent_run_id}' and "
                                  "tags.`dear_ray.role` = 'trial'")
    assert sorted(r.info.run_name for r in children) == ["head-edl", "head-softmax"]
    from dear_ray import timeline

    starts = []
    for run in children:
        name = run.info.run_name
        assert run.info.status == "FINISHED"
        steps = [m.step for m in client.get_metric_history(run.info.run_id, "train_loss")]
        assert sorted(steps) == [0, 1]
        folder = result.sweep_dir / "ray" / name
        assert sorted(p.name for p in folder.glob("checkpoint_epoch_*")) == [  # num_to_keep 2
            "checkpoint_epoch_0000", "checkpoint_epoch_0001"]
        events = timeline.read(result.sweep_dir, name)
        driver_pid = {e["pid"] for e in events if e["event"] == "trial_driver_start"}
        assert {e["pid"] for e in events if e["event"] == "worker_start"} == driver_pid
        starts.append((timeline.first(events, "worker_ready"), timeline.last(events, "epoch_reported")))
        # Tune got both epochs' reports (its per-trial result log), the last one marked done
        logs = list((result.sweep_dir / "ray").glob(f"_tune*/*{name}*/result.json"))
        assert len(logs) == 1, logs
        reports = [json.loads(line) for line in logs[0].read_text().splitlines()]
        assert [r["epoch"] for r in reports] == [0, 1] and reports[-1]["trial_done"] == 1.0
    (a0, a1), (b0, b1) = starts
    assert a0 < b1 and b0 < a1  # the two trials trained at the same time
