"""What a new user meets before anything trains: the refusals and hints of `dear-ray train`,
`test`, `sweep`, `data` and `evaluate`, each one line, before Ray starts (no Ray cluster)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from mlflow import MlflowClient

from dear_ray.cli import main

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _no_outside_tracking(monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)


def _config(tmp_path: Path, data_root: Path, **model) -> Path:
    cfg = {"name": "tiny", "data": {"data_root": str(data_root), "clip_len": 8, "crop_size": 32,
                                    "scale_short": 32, "batch_size": 6},
           "model": {"backbone": "i3d_tiny", **model}, "optim": {"epochs": 1},
           "eval": {"every_n_epochs": 0, "stochastic_passes": 2},
           "resources": {"num_workers": 1, "cpus_per_worker": 1},
           "tracking": {"run_dir": str(tmp_path / "runs")}}
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _nothing_started(tmp_path: Path) -> None:
    import ray

    assert not ray.is_initialized()
    assert not (tmp_path / "runs" / "tiny" / "ray").exists()


def test_a_checkpoint_of_another_backbone_is_refused_before_ray(tmp_path, capsys, sweep_synth):
    """An r3d18 checkpoint for an i3d model: `train` refuses naming the backbone keys (fine-tuning
    would start from scratch), unless partial loading is asked for; `test` names every key too."""
    import torch

    from dear_ray.config import load_config
    from dear_ray.models import build_recognizer
    from dear_ray.train.preflight import preflight

    other = build_recognizer(backbone="r3d18_tiny", head="softmax", num_classes=10)
    torch.save({"state_dict": other.state_dict()}, tmp_path / "r3d.pth")
    path = _config(tmp_path, sweep_synth, pretrained=str(tmp_path / "r3d.pth"))
    assert main(["train", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("dear-ray: error: PreflightError: model.pretrained: ")
    assert "its backbone does not load into model.backbone i3d_tiny" in err
    missing = err.split("backbone tensors the checkpoint does not provide (")[1].split("\n")[0]
    assert missing.count("backbone.") == 20 and missing.split(")")[0].isdigit()  # 20 named
    assert "checkpoint tensors with no place in the model (" in err
    # the real cause of the skipped classifier: another feature width, not only other classes
    assert "another backbone width" in err and "other number of classes" not in err
    assert "model.allow_partial_pretrained: true" in err
    _nothing_started(tmp_path)
    assert not (tmp_path / "runs" / "mlflow.db").exists() or MlflowClient(
        f"sqlite:///{tmp_path}/runs/mlflow.db").get_experiment_by_name("tiny") is None
    # partial loading on purpose passes the checks
    preflight(load_config(path, overrides={"model.allow_partial_pretrained": True}))
    # `test` with the same file: the classifier mismatch AND every missing / unexpected key
    assert main(["test", str(path), "--checkpoint", str(tmp_path / "r3d.pth")]) == 2
    err = capsys.readouterr().err
    assert "shape mismatch for 2 tensor(s)" in err
    assert "missing in checkpoint (" in err and "unexpected in checkpoint (" in err
    _nothing_started(tmp_path)


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("mount"),
                    reason="needs a read-only tmpfs mount (root)")
def test_an_existing_store_on_a_read_only_file_system_fails_in_one_line(tmp_path, capsys,
                                                                        sweep_synth):
    template = f"sqlite:///{tmp_path}/template.db"
    MlflowClient(template).search_experiments()  # an MLflow store (its schema)
    store = tmp_path / "ro"
    store.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(store)]).returncode:
        pytest.skip("mount not permitted here")
    try:
        uri = f"sqlite:///{store}/mlflow.db"
        shutil.copyfile(tmp_path / "template.db", store / "mlflow.db")  # an existing store...
        subprocess.run(["mount", "-o", "remount,ro", str(store)], check=True)  # ...read-only
        path = _config(tmp_path, sweep_synth)
        raw = yaml.safe_load(path.read_text())
        raw["tracking"]["uri"] = uri
        path.write_text(yaml.safe_dump(raw))
        capsys.readouterr()
        assert main(["train", str(path)]) == 2
        err = capsys.readouterr().err
        assert err.startswith("dear-ray: error: TrackingError: ")
        assert f"{store}/mlflow.db cannot be written" in err and len(err.splitlines()) == 1
        _nothing_started(tmp_path)
        sweep = tmp_path / "s.yaml"
        sweep.write_text(yaml.safe_dump({"name": "s", "base": raw, "grid": {"seed": [0]}}))
        assert main(["sweep", str(sweep)]) == 2
        err = capsys.readouterr().err
        assert f"{store}/mlflow.db cannot be written" in err and len(err.splitlines()) == 1
        assert not (tmp_path / "runs" / "s").exists()
    finally:
        subprocess.run(["umount", "--lazy", str(store)])


def test_an_experiment_of_another_run_folder_is_refused(tmp_path, capsys, sweep_synth,
                                                        monkeypatch):
    """A tracking store shared by two run folders: the experiment made by the first keeps its
    artifacts there; the second run would send its artifacts into the first run folder."""
    from dear_ray.tracking.mlflow_runs import artifact_location_for, ensure_experiment

    uri = f"sqlite:///{tmp_path}/shared/mlflow.db"
    (tmp_path / "shared").mkdir()
    ensure_experiment(uri, "tiny", artifact_location=artifact_location_for(uri, tmp_path / "first"))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    capsys.readouterr()
    assert main(["train", str(_config(tmp_path, sweep_synth))]) == 2
    err = capsys.readouterr().err
    assert err.startswith("dear-ray: error: PreflightError: tracking.experiment: MLflow experiment "
                          "'tiny'")
    assert f"{tmp_path}/first/mlartifacts" in err and f"{tmp_path}/runs/mlartifacts" in err
    assert "tracking.experiment" in err
    _nothing_started(tmp_path)


def test_a_set_that_some_cases_override_warns_naming_them(capsys):
    args = ["sweep", "--dry-run", str(REPO / "jobs/sweeps/demo.yaml"), "--set",
            "data.data_root=/mnt/shared/data/synth"]
    assert main(args) == 0
    err = capsys.readouterr().err
    assert err.startswith("dear-ray: warning: --set data.data_root='/mnt/shared/data/synth' does "
                          "not reach 2 of 10 trial(s)") and "softmax_control (" in err
    # the pretraining stage and the control arm read their own data sets
    assert "pretrain (" in err and "synth_pretrain" in err
    assert "synth_unbiased" in err and len(err.splitlines()) == 1


def test_a_sweep_that_already_ran_suggests_another_run_folder(tmp_path, capsys, sweep_synth):
    sweep = tmp_path / "s.yaml"
    sweep.write_text(yaml.safe_dump({
        "name": "s", "base": yaml.safe_load(_config(tmp_path, sweep_synth).read_text()),
        "grid": {"model.head": ["softmax"]}}))
    (tmp_path / "runs" / "s").mkdir(parents=True)
    (tmp_path / "runs" / "s" / "trials.json").write_text("{}")
    assert main(["sweep", str(sweep), "--trials", "head-softmax", "--set", "optim.epochs=2"]) == 2
    err = capsys.readouterr().err
    assert "already has results" in err and "--resume" in err
    assert f"--set tracking.run_dir=<another folder> (e.g. {tmp_path / 'runs_2'})" in err
    import ray

    assert not ray.is_initialized()


def _fake_ucf101(root: Path, video: Path) -> None:
    """UCF-101's layout: ucfTrainTestlist/ and the videos under UCF-101/<Class>/."""
    (root / "ucfTrainTestlist").mkdir(parents=True)
    (root / "ucfTrainTestlist" / "classInd.txt").write_text("1 ApplyEyeMakeup\n2 Archery\n")
    (root / "ucfTrainTestlist" / "trainlist01.txt").write_text(
        "ApplyEyeMakeup/v_a_g01.avi 1\nArchery/v_b_g01.avi 2\n")
    (root / "ucfTrainTestlist" / "testlist01.txt").write_text(
        "ApplyEyeMakeup/v_a_g02.avi\nArchery/v_b_g02.avi\n")
    for rel in ("ApplyEyeMakeup/v_a_g01.avi", "Archery/v_b_g01.avi", "ApplyEyeMakeup/v_a_g02.avi",
                "Archery/v_b_g02.avi"):
        (root / "UCF-101" / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(video, root / "UCF-101" / rel)


def test_data_lists_says_which_root_its_paths_are_under_and_data_check_points_there(
        tmp_path, capsys, sweep_synth):
    root = tmp_path / "ucf101"
    _fake_ucf101(root, next((sweep_synth / "videos").rglob("*.mp4")))
    assert main(["data", "lists", "ucf101", "--root", str(root), "--out", str(tmp_path / "lists")]) == 0
    out = capsys.readouterr().out
    train = tmp_path / "lists" / "ucf101_train_split_1_videos.txt"
    assert f"the lists' video paths are relative to {root / 'UCF-101'}" in out
    assert f"dear-ray data check {train} --root {root / 'UCF-101'}" in out
    # the README's pair as a user first types it: one line pointing at the right root
    assert main(["data", "check", str(train), "--root", str(root)]) == 2
    err = capsys.readouterr().err
    assert f"are not under --root {root} but under {root / 'UCF-101'}" in err
    assert len(err.splitlines()) == 1
    assert main(["data", "check", str(train), "--root", str(root / "UCF-101")]) == 0


def _write_stores(folder: Path) -> None:
    """A softmax model's score stores; no training video of class 0 is classified right, so
    OpenMax cannot be fitted (a warning)."""
    from dear_ray.scores import StoreMeta, compute_scores, write_score_store

    rng = np.random.default_rng(0)
    for split, n in (("train", 30), ("test", 15), ("unknown", 20)):
        labels = np.arange(n) % (4 if split == "unknown" else 3)
        predicted = np.where(labels == 0, 1, labels) if split == "train" else labels
        logits = rng.normal(0, 1, (n, 3)) + (0 if split == "unknown" else 4 * np.eye(3)[predicted])
        write_score_store(folder / f"{split}.parquet", video_ids=[f"{split}{i}" for i in range(n)],
                          labels=labels, logits=logits, features=rng.normal(0, 1, (n, 4)),
                          scores=compute_scores("softmax", logits),
                          meta=StoreMeta(split=split, dataset="unk" if split == "unknown" else "s",
                                         num_known=3, head="softmax", checkpoint="c", run="m"))


def test_evaluate_with_two_scores_shows_the_score_column_and_one_line_warnings(tmp_path):
    _write_stores(tmp_path / "stores")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    out = subprocess.run([sys.executable, "-m", "dear_ray.cli", "evaluate", str(tmp_path / "stores"),
                          "--out", str(tmp_path / "eval"), "--score", "msp,energy,openmax",
                          "--resamples", "0", "--trials", "2"],
                         capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    lines = out.stdout.splitlines()
    assert lines[0].split()[:2] == ["method", "score"]
    rows = [line.split()[:2] for line in lines if line.startswith("softmax ")]
    assert rows == [["softmax", "msp"], ["softmax", "energy"]]  # told apart by the score
    warnings = [line for line in out.stderr.splitlines() if line.strip()]
    assert any("no openmax row" in line for line in warnings)
    assert all(line.startswith("dear-ray: warning: ") for line in warnings), warnings
    assert "UserWarning" not in out.stderr
