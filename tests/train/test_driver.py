"""Tests of dear_ray.train.driver: the injected fault, the checkpoint check before the workers,
and whole Ray Train runs (evaluation itself: tests/train/test_evaluation.py).

The end-to-end runs start a private local Ray instance (2 CPUs) and are marked slow.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from mlflow import MlflowClient

from dear_ray.config import load_config
from dear_ray.models import build_recognizer
from dear_ray.scores.store import read_score_store
from dear_ray.train import driver, worker
from dear_ray.train.checkpointing import load_checkpoint
from dear_ray.train.evaluation import stores_dir
from dear_ray.train.data import build_eval_loader, num_known_classes
from dear_ray.train.loop import predict


def _config(root, tmp_path, **overrides):
    base = {"name": "t", "data": {"data_root": str(root), "crop_size": 32, "scale_short": 32,
                                  "clip_len": 8, "batch_size": 4,
                                  "test_views": {"num_clips": 2, "num_crops": 1}},
            "model": {"backbone": "i3d_tiny", "head": "softmax"},
            "optim": {"epochs": 2, "lr": 0.01},
            "eval": {"stochastic_passes": 3},
            "tracking": {"run_dir": str(tmp_path / "runs")}}
    return load_config(base, overrides=overrides)


def test_injected_fault_fires_once_on_rank_zero(synth_root, tmp_path, monkeypatch):
    cfg = _config(synth_root, tmp_path, **{"debug.fail_at_epoch": 1})
    exits = []
    monkeypatch.setattr(worker.os, "_exit", exits.append)
    worker._maybe_fail(cfg, "tr", 0, 0)
    worker._maybe_fail(cfg, "tr", 1, 1)
    assert exits == []                       # wrong epoch, then not rank 0
    worker._maybe_fail(cfg, "tr", 1, 0)
    assert exits == [1]
    worker._maybe_fail(cfg, "tr", 1, 0)      # the restarted attempt sees the marker
    assert exits == [1]
    assert (cfg.run_root() / "debug" / "tr.failed_at_epoch_1").exists()


# --------------------------------------------------------------------------------------------
# Ray Train end to end


@pytest.fixture(scope="module")
def ray_cluster(tmp_path_factory):
    from dear_ray.tune.local_ray import PrivateRay

    private = PrivateRay(tmp_path_factory.mktemp("driver_ray"), num_cpus=2)
    private.start()
    yield
    private.stop()


def _runs(cfg):
    client = MlflowClient(f"sqlite:///{cfg.tracking.run_dir}/mlflow.db")
    exp = client.get_experiment_by_name(cfg.experiment_name())
    return client, client.search_runs([exp.experiment_id])


@pytest.mark.slow
def test_run_training_two_workers_writes_stores_and_one_mlflow_run(synth_root, tmp_path,
                                                                  ray_cluster, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    cfg = _config(synth_root, tmp_path, **{"resources.num_workers": 2, "optim.epochs": 2})
    out = driver.run_training(cfg)
    stores = stores_dir(cfg, "t")
    assert sorted(p.name for p in stores.iterdir()) == [  # + the classifier for ViM/ReAct/ASH
        "classifier.npz", "test.parquet", "test_scuba.parquet", "test_scufo.parquet",
        "test_shifted.parquet", "train.parquet", "unknown.parquet"]
    assert {"test_top1", "test_shifted_top1", "val_top1", "train_loss"} <= set(out)
    client, runs = _runs(cfg)
    assert len(runs) == 1 and runs[0].info.status == "FINISHED"
    run = runs[0]
    assert run.info.run_id == out["run_id"]
    assert run.data.params["optim.lr"] == "0.01" and run.data.tags["head"] == "softmax"
    assert [m.step for m in client.get_metric_history(run.info.run_id, "train_loss")] == [0, 1]
    assert run.data.metrics["test_top1"] == pytest.approx(out["test_top1"])
    # the last checkpoint reproduces the stored test logits
    k = num_known_classes(cfg.data)
    model = build_recognizer(backbone="i3d_tiny", head="softmax", num_classes=k)
    state = load_checkpoint(out["checkpoint"], model=model, restore_rng=False)
    assert state.epoch == 1 and state.extra["mlflow_run_id"] == out["run_id"]
    preds = predict(model, build_eval_loader(cfg, "test", num_classes=k),
                    device=torch.device("cpu"))
    store = read_score_store(stores / "test.parquet")
    assert preds.video_ids == list(store.video_ids)  # both workers' shards, in list order
    assert np.allclose(preds.logits, store.logits, atol=1e-4)
    train = read_score_store(stores / "train.parquet")
    assert len(set(train.video_ids)) == len(train.video_ids) == len(
        build_eval_loader(cfg, "train", num_classes=k).dataset)


@pytest.mark.slow
def test_worker_failure_resumes_into_the_same_mlflow_run(synth_root, tmp_path, ray_cluster,
                                                        monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    cfg = _config(synth_root, tmp_path, **{
        "name": "resume", "resources.num_workers": 2, "resources.max_failures": 1,
        "optim.epochs": 3, "debug.fail_at_epoch": 1, "eval.every_n_epochs": 0,
        "eval.splits": ["test"], "model.head": "edl"})
    out = driver.run_training(cfg)
    assert (cfg.run_root() / "debug" / "resume.failed_at_epoch_1").exists()
    client, runs = _runs(cfg)
    assert len(runs) == 1 and runs[0].info.status == "FINISHED"
    for key in ("epoch", "train_loss", "lr"):
        steps = [m.step for m in client.get_metric_history(runs[0].info.run_id, key)]
        assert steps == [0, 1, 2], (key, steps)
    assert out["epoch"] == 2 and (stores_dir(cfg, "resume") / "test.parquet").exists()


@pytest.mark.slow
def test_local_mode_runs_in_process(synth_root, tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    cfg = _config(synth_root, tmp_path, **{"resources.num_workers": 0, "optim.epochs": 3,
                                           "checkpoint.num_to_keep": 1,
                                           "eval.splits": ["test"]})
    out = driver.run_training(cfg)
    kept = sorted(p.name for p in (cfg.run_root() / "ray" / "t").glob("checkpoint_epoch_*"))
    assert kept == ["checkpoint_epoch_0002"] and out["checkpoint"].endswith(kept[0])
    _, runs = _runs(cfg)
    assert len(runs) == 1 and runs[0].data.metrics["epoch"] == 2


@pytest.mark.slow
def test_local_mode_resumes_after_its_last_complete_checkpoint(synth_root, tmp_path,
                                                               monkeypatch):
    """A run without Ray storage (num_workers 0: `dear-ray train --resume`, a retried or resumed
    in-process sweep trial) continues after its last complete checkpoint in its run folder: a
    half-written one (killed while saving) is skipped, the MLflow run is continued with every
    epoch once, and the resumed run ends with the same weights as the uninterrupted one."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    cfg = _config(synth_root, tmp_path, **{"resources.num_workers": 0, "optim.epochs": 3,
                                           "checkpoint.every_n_epochs": 1,
                                           "checkpoint.num_to_keep": None,
                                           "eval.every_n_epochs": 0, "eval.splits": ["test"]})
    folder = cfg.run_root() / "ray" / "t"
    whole = driver.run_training(cfg)
    final = torch.load(folder / "checkpoint_epoch_0002" / "state.pt", weights_only=False)
    # killed while saving epoch 2: that checkpoint is half written, the stores are not there
    import shutil

    shutil.rmtree(folder / "checkpoint_epoch_0002")
    (folder / "checkpoint_epoch_0002.partial").mkdir()
    (folder / "checkpoint_epoch_0002.partial" / "state.pt").write_bytes(b"half")
    shutil.rmtree(stores_dir(cfg, "t"))
    assert driver.latest_local_checkpoint(folder).path.endswith("checkpoint_epoch_0001")

    again = driver.run_training(cfg)
    assert again["run_id"] == whole["run_id"]
    assert again["test_top1"] == pytest.approx(whole["test_top1"])
    resumed = torch.load(folder / "checkpoint_epoch_0002" / "state.pt", weights_only=False)
    assert resumed["epoch"] == 2 and resumed["global_step"] == final["global_step"]
    for key, value in final["model"].items():
        assert torch.equal(resumed["model"][key], value), key
    assert not (folder / "checkpoint_epoch_0002.partial").exists()  # written over, renamed
    client, runs = _runs(cfg)
    assert len(runs) == 1 and runs[0].info.status == "FINISHED"
    history = client.get_metric_history(runs[0].info.run_id, "train_loss")
    assert sorted(m.step for m in history) == [0, 1, 2]
    assert runs[0].data.metrics["resumed_at_epoch"] == 2


def test_a_wrong_pretrained_checkpoint_fails_before_any_worker_starts(synth_root, tmp_path,
                                                                     monkeypatch):
    from dear_ray.models.checkpoint import CheckpointError

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    edl = build_recognizer(backbone="i3d_tiny", head="edl", num_classes=3)
    torch.save({"state_dict": edl.state_dict()}, tmp_path / "edl.pth")
    cfg = _config(synth_root, tmp_path, **{"model.head": "dear", "eval_only": True,
                                           "model.head_options": {"temporal_kernel": 1},
                                           "model.pretrained": str(tmp_path / "edl.pth")})

    def no_trainer(*args, **kwargs):
        raise AssertionError("the TorchTrainer was built")

    monkeypatch.setattr("ray.train.torch.TorchTrainer", no_trainer)
    with pytest.raises(CheckpointError, match=r"missing in checkpoint \(\d+\): "
                                              r"cls_head.debias_head"):
        driver.run_training(cfg)
    # fine-tuning from the same file only needs matching shapes: the new head is "missing"
    with pytest.raises(AssertionError, match="TorchTrainer was built"):
        driver.run_training(cfg.override({"eval_only": False}))
