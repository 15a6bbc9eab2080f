"""Tests of dear_ray.train.driver: evaluation stores, the injected fault, and whole Ray Train runs.

The end-to-end runs start a local Ray instance (2 CPUs) and are marked slow.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from mlflow import MlflowClient

from dear_ray.config import load_config
from dear_ray.models import build_recognizer
from dear_ray.scores.store import read_score_store
from dear_ray.train import driver
from dear_ray.train.checkpointing import load_checkpoint
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


def test_evaluate_splits_writes_one_store_per_split(synth_root, tmp_path):
    torch.manual_seed(0)
    cfg = _config(synth_root, tmp_path, **{"eval.splits": ["test", "unknown"]})
    k = num_known_classes(cfg.data)
    model = build_recognizer(backbone="i3d_tiny", head="softmax", num_classes=k)
    metrics = driver.evaluate_splits(model, cfg, "trial0", k, torch.device("cpu"), False)
    out = driver.stores_dir(cfg, "trial0")
    assert sorted(p.name for p in out.iterdir()) == ["test.parquet", "unknown.parquet"]
    test = read_score_store(out / "test.parquet")
    unknown = read_score_store(out / "unknown.parquet")
    assert test.meta.split == "test" and unknown.meta.split == "unknown"
    assert unknown.meta.dataset == "unknown" and test.meta.num_known == k
    assert test.sample_logits.shape == (3, len(test.video_ids), k)  # MC-dropout passes kept
    assert {"msp", "bald"} <= set(test.scores)
    assert metrics["test_top1"] == pytest.approx(np.mean(test.logits.argmax(1) == test.labels))
    assert "unknown_top1" not in metrics and metrics["unknown_bad_videos"] == 0
    # the store holds what the model predicts (MSP = 1 - max softmax)
    p = torch.softmax(torch.tensor(test.logits), 1).numpy()
    assert np.allclose(test.scores["msp"], 1 - p.max(1), atol=1e-5)


def test_unknown_sets_other_than_unknown_get_their_own_file(synth_root, tmp_path):
    cfg = _config(synth_root, tmp_path, **{"data.unknown": {"other": "unknown.txt"},
                                           "eval.splits": ["other"],
                                           "model.head": "edl"})
    k = num_known_classes(cfg.data)
    model = build_recognizer(backbone="i3d_tiny", head="edl", num_classes=k)
    driver.evaluate_splits(model, cfg, "t1", k, torch.device("cpu"), False)
    store = read_score_store(driver.stores_dir(cfg, "t1") / "unknown_other.parquet")
    assert (store.meta.split, store.meta.dataset, store.meta.head) == ("unknown", "other", "edl")
    assert store.sample_logits is None and "vacuity" in store.scores


def test_injected_fault_fires_once_on_rank_zero(synth_root, tmp_path, monkeypatch):
    cfg = _config(synth_root, tmp_path, **{"debug.fail_at_epoch": 1})
    exits = []
    monkeypatch.setattr(driver.os, "_exit", exits.append)
    driver._maybe_fail(cfg, "tr", 0, 0)
    driver._maybe_fail(cfg, "tr", 1, 1)
    assert exits == []                       # wrong epoch, then not rank 0
    driver._maybe_fail(cfg, "tr", 1, 0)
    assert exits == [1]
    driver._maybe_fail(cfg, "tr", 1, 0)      # the restarted attempt sees the marker
    assert exits == [1]
    assert (cfg.run_root() / "debug" / "tr.failed_at_epoch_1").exists()


# --------------------------------------------------------------------------------------------
# Ray Train end to end


@pytest.fixture(scope="module")
def ray_cluster():
    import os

    import ray

    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    ray.init(address="local", num_cpus=2, include_dashboard=True)
    yield
    ray.shutdown()


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
    stores = driver.stores_dir(cfg, "t")
    assert sorted(p.name for p in stores.iterdir()) == [
        "test.parquet", "test_shifted.parquet", "train.parquet", "unknown.parquet"]
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
    assert preds.video_ids == list(store.video_ids)
    assert np.allclose(preds.logits, store.logits, atol=1e-4)


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
    assert out["epoch"] == 2 and (driver.stores_dir(cfg, "resume") / "test.parquet").exists()


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
