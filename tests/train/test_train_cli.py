"""`dear-ray train` / `test` as a user meets them: a run that fails says why in one line (console
and MLflow), the videos a run skipped are counted, `--resume` with changed settings shows the
diff before anything starts, and test runs do not take the training runs' names.

In-process runs (`resources.num_workers: 0`, no Ray) on the session's tiny data set, one video
of `train` and one of `test` made undecodable.
"""

from __future__ import annotations

import re
import shutil

import pytest
import yaml
from mlflow import MlflowClient

from dear_ray.cli import main


@pytest.fixture(autouse=True)
def _no_outside_tracking(monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)


@pytest.fixture(scope="module")
def bad_root(synth_root, tmp_path_factory):
    """A copy of the data set whose first train and first test video cannot be decoded."""
    root = tmp_path_factory.mktemp("bad") / "synth"
    shutil.copytree(synth_root, root)
    for split in ("train", "test"):
        rel = (root / f"{split}.txt").read_text().split()[0]
        (root / rel).write_bytes((root / rel).read_bytes()[:300])
    return root


@pytest.fixture(scope="module")
def runs(bad_root, tmp_path_factory):
    """A config (1 epoch of i3d_tiny, in-process) and its run folder."""
    folder = tmp_path_factory.mktemp("train_cli")
    cfg = {"name": "tiny", "data": {"data_root": str(bad_root), "clip_len": 8, "crop_size": 32,
                                    "scale_short": 32, "batch_size": 4},
           "model": {"backbone": "i3d_tiny"}, "optim": {"epochs": 1, "lr": 0.01},
           "eval": {"every_n_epochs": 0, "stochastic_passes": 2},
           "resources": {"num_workers": 0}, "tracking": {"run_dir": str(folder / "runs")}}
    path = folder / "tiny.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return {"config": path, "runs": folder / "runs"}


def _mlflow_runs(run_dir) -> dict:
    client = MlflowClient(f"sqlite:///{run_dir}/mlflow.db")
    exp = client.get_experiment_by_name("tiny")
    return {r.info.run_name: r for r in client.search_runs([exp.experiment_id])}


def test_skipped_videos_are_counted_and_too_many_fail_in_one_line(runs, capsys):
    config = str(runs["config"])
    # up to half the videos may be skipped: the run finishes and says how many it skipped
    assert main(["train", config, "--set", "data.max_bad_fraction=0.5"]) == 0
    out = capsys.readouterr().out
    assert "[tiny] epoch 1/1  loss " in out and "run tiny finished: MLflow run " in out
    skipped = runs["runs"] / "tiny" / "bad_videos" / "tiny"
    line = next(x for x in out.splitlines() if "could not be decoded" in x)
    assert re.fullmatch(r"2 video\(s\) could not be decoded and were skipped \((train: 1, test: 1|"
                        r"test: 1, train: 1)\); the list: " + re.escape(str(skipped)), line), line
    # the default 5%: the run stops, and one line names the cause (not the list's last line)
    assert main(["train", config]) == 2
    captured = capsys.readouterr()
    err = captured.err.splitlines()
    assert len(err) == 2 and "Traceback" not in captured.err + captured.out
    cause = (r"TooManyBadVideosError: 1 of 12 videos in train \(rank 0\) could not be decoded "
             r"\(8\.3%; max_bad_fraction=5\.0%\) \(the videos: "
             + re.escape(str(runs["runs"] / "tiny" / "bad_videos" / "tiny-2")) + r"\)")
    assert re.fullmatch(r"dear-ray: error: training run tiny-2 failed: " + cause, err[0]), err[0]
    assert err[1].startswith("  run folder: ")
    assert list((runs["runs"] / "tiny" / "bad_videos" / "tiny-2").glob("train_rank0.csv"))
    run = _mlflow_runs(runs["runs"])["tiny-2"]
    assert run.info.status == "FAILED" and re.fullmatch(cause, run.data.tags["error"])
    # `dear-ray test` of the first run's checkpoint on the same data: too many in its first split
    checkpoint = runs["runs"] / "tiny" / "ray" / "tiny" / "checkpoint_epoch_0000"
    assert main(["test", config, "--checkpoint", str(checkpoint)]) == 2
    err = capsys.readouterr().err.splitlines()
    assert re.fullmatch(r"dear-ray: error: test run tiny-test failed: TooManyBadVideosError: 1 of "
                        r"12 videos in train could not be decoded \(8\.3%; max_bad_fraction=5\.0%\)",
                        err[0]), err[0]
    test_run = _mlflow_runs(runs["runs"])["tiny-test"]
    assert test_run.info.status == "FAILED" and test_run.data.tags["error"] == err[0].split(" failed: ")[1]


def test_resume_with_changed_settings_shows_the_diff_and_leaves_the_run_alone(runs, capsys):
    """After the runs above: tiny (finished), tiny-2 (failed: unfinished), tiny-test (a test
    run). `--resume` picks tiny-2, the training run, and refuses the changed learning rate."""
    if "tiny-2" not in _mlflow_runs(runs["runs"]):
        pytest.skip("needs the runs of the test above")
    before = {name: r.info.status for name, r in _mlflow_runs(runs["runs"]).items()}
    assert main(["train", str(runs["config"]), "--resume", "--set", "optim.lr=0.02"]) == 2
    captured = capsys.readouterr()
    assert "resuming run tiny-2" in captured.out
    assert captured.err.splitlines()[:2] == [
        "dear-ray: error: --resume: the resolved config of run tiny-2 changed since it started:",
        "  tiny-2: optim.lr: 0.01 -> 0.02"]
    assert f"run `dear-ray train {runs['config']}` without --resume" in captured.err
    after = {name: r.info.status for name, r in _mlflow_runs(runs["runs"]).items()}
    assert after == before  # nothing reopened (no RUNNING run), nothing new
    assert not (runs["runs"] / "tiny" / "ray" / "tiny-3").exists()
