"""Tests of `dear-ray test` (dear_ray.train.eval_run): released-layout checkpoints of every head,
evaluated and logged like a trained trial; wrong files fail before any worker starts; the stores
do not depend on the number of Ray Train workers; the model-zoo sweep's dry run.

Most runs are in-process (`resources.num_workers: 0`); the 1-vs-2-worker test starts a private
local Ray (2 CPUs) and is marked slow.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from mlflow import MlflowClient

from dear_ray.cli import main
from dear_ray.config import ConfigError, load_config
from dear_ray.models import build_recognizer
from dear_ray.models.checkpoint import to_mmaction2_layout, to_sdn_layout
from dear_ray.scores.store import read_score_store
from dear_ray.train.checkpointing import save_checkpoint
from dear_ray.train.evaluation import stores_dir

REPO = Path(__file__).resolve().parents[2]
RESAMPLES = 20
# metrics of a trained trial that describe training, not the evaluation
TRAINING_ONLY = {"lr", "epoch", "anneal", "epoch_time_s", "clips_per_s", "bad_videos",
                 "skipped_batches", "train_top1", "val_top1"}


@pytest.fixture(autouse=True)
def _one_thread(monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _base(root, run_dir, **overrides) -> dict:
    cfg = {"name": "t", "data": {"data_root": str(root), "crop_size": 32, "scale_short": 32,
                                 "clip_len": 8, "batch_size": 4,
                                 "test_views": {"num_clips": 2, "num_crops": 1}},
           "model": {"backbone": "i3d_tiny", "head": "softmax"},
           "optim": {"epochs": 1, "lr": 0.01},
           "eval": {"stochastic_passes": 3, "every_n_epochs": 0},
           "resources": {"num_workers": 0},
           "tracking": {"run_dir": str(run_dir)}}
    return load_config(cfg, overrides=overrides).to_dict()


def _write_config(path: Path, config: dict) -> Path:
    path.write_text(yaml.safe_dump(config))
    return path


def _runs(run_dir: Path, experiment: str) -> dict:
    client = MlflowClient(f"sqlite:///{run_dir}/mlflow.db")
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        return {}
    return {r.info.run_name: r for r in client.search_runs([exp.experiment_id])}


def _random_model(backbone: str, head: str, k: int, options: dict):
    torch.manual_seed(0)
    model = build_recognizer(backbone=backbone, head=head, num_classes=k, head_options=options)
    with torch.no_grad():  # random, not the zero/identity inits (BN stats, biases)
        for key, t in model.state_dict().items():
            if t.is_floating_point():
                t.copy_(torch.rand_like(t) + 0.5 if key.endswith("running_var")
                        else 0.2 * torch.randn_like(t))
    return model


def _save(model, layout: str, path: Path) -> Path:
    """`model`'s weights as the codebase of `layout` saves them."""
    state = model.state_dict()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9).state_dict()
    if layout in ("mmaction2", "dear"):  # mmcv save_checkpoint: meta, state_dict, optimizer
        torch.save({"meta": {"epoch": 50, "mmcv_version": "1.2.1", "config": "model = dict()"},
                    "state_dict": to_mmaction2_layout(state), "optimizer": optimizer}, path)
    elif layout == "sdn":  # SDN libs/train_epoch.py: DataParallel state dict
        torch.save({"epoch": 100, "arch": "resnet-18", "state_dict": to_sdn_layout(state),
                    "optimizer": optimizer}, path)
    else:  # ours: a training checkpoint folder
        path = save_checkpoint(path.with_suffix(""), model=model, epoch=0, global_step=1)
    return path


@pytest.fixture(scope="module")
def trained_names(synth_root, tmp_path_factory):
    """The evaluation metric names of a trained trial (edl, 1 epoch, in-process), report included."""
    from dear_ray.train.driver import run_training
    from dear_ray.train.eval_run import report_run

    run_dir = tmp_path_factory.mktemp("trained")
    cfg = load_config(_base(synth_root, run_dir, **{"name": "trained", "model.head": "edl"}))
    out = run_training(cfg)
    report_run(cfg, "trained", run_id=out["run_id"], tracking_uri=f"sqlite:///{run_dir}/mlflow.db",
               resamples=RESAMPLES, curve_resamples=RESAMPLES)
    names = set(_runs(run_dir, "trained")["trained"].data.metrics)
    assert "train_loss" in names and "unknown/open_maf1" in names and "test_top1" in names
    return {n for n in names if n not in TRAINING_ONLY
            and not (n.startswith("train_") and not n.startswith("train_eval_"))}


# backbone, head, head options, the layout the head's checkpoints are released in, and a key
# that only that layout has
CASES = [
    ("i3d_tiny", "softmax", {}, "mmaction2", "cls_head.fc_cls.weight"),
    ("i3d_tiny", "bnn", {}, "dear", "cls_head.bnn_cls.bnn_layer.weight_mu"),
    ("i3d_tiny", "rpl", {}, "dear", "cls_head.fc_centers.weight"),
    ("tsm_tiny", "edl", {}, "mmaction2", "backbone.layer1.0.conv1.conv.net.weight"),
    ("slowfast_tiny", "edl_avu", {}, "dear", "cls_head.fc_cls.weight"),
    ("tpn_tiny", "dear", {"temporal_kernel": 1}, "dear", "neck.aux_head.fc.weight"),
    ("r3d18_tiny", "sdn", {}, "sdn", "module.place_mlp.p_last_fc.weight"),
    ("i3d_tiny", "edl", {}, "dear_ray", None),
]


@pytest.mark.parametrize("backbone, head, options, layout, key", CASES,
                         ids=[f"{c[1]}-{c[3]}-{c[0]}" for c in CASES])
def test_dear_ray_test_evaluates_a_checkpoint_like_a_trained_trial(
        synth_root, tmp_path, capsys, trained_names, backbone, head, options, layout, key):
    overrides = {"model.backbone": backbone, "model.head": head, "model.head_options": options}
    if head == "sdn":
        places = len((synth_root / "scenes.txt").read_text().split())
        options = overrides["model.head_options"] = {"num_places": places}
        overrides["data.scene_labels"] = "scene_labels.npy"
    run_dir = tmp_path / "runs"
    config = _write_config(tmp_path / "cfg.yaml", _base(synth_root, run_dir, **overrides))
    model = _random_model(backbone, head, 3, options)
    checkpoint = _save(model, layout, tmp_path / "latest.pth")
    if key is not None:
        saved = torch.load(checkpoint, weights_only=True)["state_dict"]
        assert key in saved  # really the released key names

    assert main(["test", str(config), "--checkpoint", str(checkpoint),
                 "--resamples", str(RESAMPLES)]) == 0
    printed = capsys.readouterr().out
    assert f"loaded {len(model.state_dict())}/{len(model.state_dict())} tensors" in printed
    # one line for the run, then the table: no raw `key: value` dump of the run's metrics
    assert "test run t-test finished: MLflow run " in printed
    assert not [line for line in printed.splitlines() if re.fullmatch(r"\w+: [-\d.e]+", line)]
    runs = _runs(run_dir, "t")
    run = runs["t-test"]  # a test run's name: the training runs keep NAME, NAME-2, ...
    assert run.info.status == "FINISHED" and run.data.tags["head"] == head
    assert set(run.data.metrics) == trained_names  # the names a trained trial gets
    assert set(run.data.metrics) > {"test_top1", "closed_top1", "unknown/auroc",
                                    "unknown/open_maf1", "unknown/binarized_auc"}
    client = MlflowClient(f"sqlite:///{run_dir}/mlflow.db")
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id, "report")}
    assert {"report/results.csv", "report/openness_curves.png"} <= artifacts
    assert {a.path for a in client.list_artifacts(run.info.run_id, "stores")} == {
        f"stores/{s}.parquet" for s in ("train", "test", "test_shifted", "test_scuba",
                                        "test_scufo", "unknown")}
    if head == "softmax":  # MC dropout comes post hoc, in its own nested run
        assert runs["t-test/mc_dropout"].data.tags["mlflow.parentRunId"] == run.info.run_id
    # the stores hold the checkpoint's predictions, not a fresh model's
    store = read_score_store(stores_dir(load_config(config), "t-test") / "test.parquet")
    assert store.meta.checkpoint == str(checkpoint.absolute())
    from dear_ray.train.evaluation import predict_shard

    cfg = load_config(config)
    preds = predict_shard(model, cfg, "test", num_classes=3, rank=0, world_size=1,
                          device=torch.device("cpu"), amp=False).preds
    assert preds.video_ids == list(store.video_ids)
    np.testing.assert_allclose(preds.logits, store.logits, rtol=1e-4, atol=1e-5)


def test_wrong_or_corrupt_checkpoints_fail_before_ray_and_mlflow(synth_root, tmp_path, capsys):
    run_dir = tmp_path / "runs"
    config = _write_config(tmp_path / "cfg.yaml", _base(synth_root, run_dir, **{
        "model.head": "dear", "model.head_options": {"temporal_kernel": 1}}))
    edl = _random_model("i3d_tiny", "edl", 3, {})
    cases = {
        "junk.pth": ("not a readable torch checkpoint", None),
        "edl.pth": (r"does not fit model.backbone i3d_tiny \+ model.head dear \(3 classes, "
                    r"head_options \{'temporal_kernel': 1\}\).*\n  missing in checkpoint "
                    r"\(\d+\): cls_head.debias_head", edl),
        "five.pth": (r"cls_head.fc_cls.weight: checkpoint \(5, \d+\), model \(3, \d+\)",
                     _random_model("i3d_tiny", "dear", 5, {"temporal_kernel": 1})),
    }
    whole = _save(edl, "dear", tmp_path / "whole.pth").read_bytes()
    (tmp_path / "junk.pth").write_bytes(whole[: len(whole) // 2])  # a truncated download
    for name, (message, model) in cases.items():
        if model is not None:
            _save(model, "dear", tmp_path / name)
        assert main(["test", str(config), "--checkpoint", str(tmp_path / name)]) == 2
        err = capsys.readouterr().err
        assert "model.pretrained: " in err and name in err  # found by the checks before Ray
        assert re.search(message, err), err
    assert not (run_dir / "t" / "ray").exists()  # no run was started
    assert _runs(run_dir, "t") == {}
    # the other direction: a DEAR checkpoint for an EDL model has unexpected keys
    dear = _save(_random_model("i3d_tiny", "dear", 3, {"temporal_kernel": 1}), "dear",
                 tmp_path / "dear.pth")
    assert main(["test", str(config), "--checkpoint", str(dear), "--set", "model.head=edl",
                 "--set", "model.head_options={}"]) == 2
    assert "unexpected in checkpoint" in capsys.readouterr().err


def test_eval_only_is_the_one_spelling_and_needs_a_checkpoint(synth_root, tmp_path):
    base = _base(synth_root, tmp_path / "runs")
    with pytest.raises(ConfigError, match="eval_only: true evaluates model.pretrained"):
        load_config(base, overrides={"eval_only": True})
    with pytest.raises(ConfigError, match="optim.epochs: expected >= 1 training epochs; to "
                                          "evaluate a checkpoint without training set eval_only"):
        load_config(base, overrides={"optim.epochs": 0, "model.pretrained": "x.pth"})
    cfg = load_config(base, overrides={"eval_only": True, "model.pretrained": "x.pth",
                                       "data.val_list": None, "eval.every_n_epochs": 5})
    assert cfg.eval_only and cfg.model.pretrained == str(Path("x.pth").absolute())
    with pytest.raises(ConfigError, match="an eval_only run has none"):
        cfg.override({"debug.fail_at_epoch": 0, "resources.num_workers": 1})


def test_zoo_sweep_dry_run_lists_the_released_checkpoints_without_data(capsys):
    from dear_ray.tune import expand_trials, load_sweep

    path = REPO / "jobs" / "sweeps" / "dear_ucf101_zoo.yaml"
    assert main(["sweep", str(path), "--dry-run"]) == 0
    out = capsys.readouterr().out
    names = [f"{b}_{h}" for b in ("i3d", "tsm", "slowfast", "tpn")
             for h in ("softmax", "bnn", "rpl", "dear")]
    assert all(f"\n{n} " in f"\n{out}" for n in names) and "16 trial(s)" in out
    assert "softmax,mc_dropout,openmax" in out
    plans = {p.name: p.config for p in expand_trials(load_sweep(path))}
    assert sorted(plans) == sorted(names)
    folders = {"softmax": "dnn", "bnn": "bnn", "rpl": "rpl", "dear": "edlnokl_avuc_debias"}
    for name, cfg in plans.items():
        backbone, head = name.split("_")
        assert cfg.eval_only and cfg.model.head == head
        assert not Path(cfg.data.data_root).exists()  # validated with no data present
        work_dir = "tpn_slowonly" if backbone == "tpn" else backbone
        folder = folders[head]
        if backbone == "tpn":  # DEAR's TPN folders: celoss (SoftMax), edlloss_nokl_... (DEAR)
            folder = {"dnn": "celoss", "edlnokl_avuc_debias": "edlloss_nokl_avuc_debias"}.get(
                folder, folder)
        assert cfg.model.pretrained == (f"/mnt/shared/data/checkpoints/dear/{work_dir}/"
                                        f"finetune_ucf101_{work_dir}_{folder}/latest.pth")
        assert set(cfg.data.unknown) == {"hmdb51", "mit_v2"} and "train" in cfg.eval_splits()
        assert cfg.resources.use_gpu and cfg.resources.num_workers >= 2
    # the test views of the training sweep's cases, trial by trial
    trained = {p.name: p.config for p in expand_trials(
        load_sweep(REPO / "jobs" / "sweeps" / "dear_ucf101.yaml"))}
    for name, cfg in plans.items():
        t = trained[name]
        views = lambda c: (c.model.backbone, c.model.head, c.model.head_options,  # noqa: E731
                           c.model.dropout, c.data.test_views, c.data.test_sampler or
                           c.data.sampler, c.data.clip_len, c.data.frame_interval,
                           c.data.num_segments, c.data.segment_sampling, c.data.test_crop_size,
                           c.data.test_scale_short, c.data.mean, c.data.std, c.eval)
        assert views(cfg)[:-1] == views(t)[:-1], name
        assert cfg.eval.model_copy(update={"every_n_epochs": 0}) == \
            t.eval.model_copy(update={"every_n_epochs": 0})


# --------------------------------------------------------------------------------------------
# Ray Train: 1 vs 2 workers


@pytest.mark.slow
def test_one_and_two_workers_write_the_same_stores(synth_root, tmp_path):
    from dear_ray.train.driver import run_training
    from dear_ray.tune.local_ray import PrivateRay

    model = _random_model("i3d_tiny", "softmax", 3, {})
    checkpoint = _save(model, "mmaction2", tmp_path / "latest.pth")
    base = _base(synth_root, tmp_path / "runs", **{
        "eval_only": True, "model.pretrained": str(checkpoint), "data.batch_size": 2,
        "resources.cpus_per_worker": 0.5})
    private = PrivateRay(tmp_path / "ray", num_cpus=2)
    private.start()
    try:
        outs = {n: run_training(load_config(base, overrides={"resources.num_workers": n}),
                                trial_name=f"w{n}") for n in (1, 2)}
    finally:
        private.stop()
    cfg = load_config(base)
    for split in ("train", "test", "test_shifted", "test_scuba", "test_scufo", "unknown"):
        one, two = (read_score_store(stores_dir(cfg, f"w{n}") / f"{split}.parquet")
                    for n in (1, 2))
        assert list(one.video_ids) == list(two.video_ids), split
        assert len(set(one.video_ids)) == len(one.video_ids)
        np.testing.assert_allclose(one.logits, two.logits, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(one.sample_logits, two.sample_logits, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(one.features, two.features, rtol=1e-5, atol=1e-6)
    assert outs[1]["test_top1"] == outs[2]["test_top1"]
    assert (outs[1]["eval_workers"], outs[2]["eval_workers"]) == (1, 2)  # really 2 shards
    runs = _runs(tmp_path / "runs", "t")
    assert runs["w2"].info.status == "FINISHED" and runs["w2"].data.metrics["test_top1"] == \
        outs[2]["test_top1"]
