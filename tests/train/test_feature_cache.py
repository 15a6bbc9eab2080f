"""The feature cache of a frozen backbone (dear_ray.train.feature_cache, cached_features): its key,
reuse across trials (counted backbone forwards), the rebuild of a broken entry, concurrent
builders, evaluation equal to the live backbone's, the training views, and the config rules.

In-process (num_workers 0), no Ray.
"""

from __future__ import annotations

import logging
import shutil
import threading
import time

import numpy as np
import pytest
import torch

from dear_ray.config import ConfigError, load_config
from dear_ray.models import build_recognizer
from dear_ray.scores.store import read_score_store
from dear_ray.train import driver
from dear_ray.train import feature_cache as fc
from dear_ray.train.cached_features import attach_feature_cache, cached_entries
from dear_ray.train.data import build_dataset
from dear_ray.train.evaluation import stores_dir
from dear_ray.train.sharding import predict_distributed


def _config(root, tmp_path, **overrides):
    base = {"name": "fc", "data": {"data_root": str(root), "crop_size": 32, "scale_short": 32,
                                   "clip_len": 8, "batch_size": 4,
                                   "test_views": {"num_clips": 2, "num_crops": 1}},
            "model": {"backbone": "i3d_tiny", "head": "softmax", "freeze_backbone": True,
                      "feature_cache": "on"},
            "optim": {"epochs": 2, "lr": 0.01},
            "eval": {"stochastic_passes": 3, "every_n_epochs": 0},
            "resources": {"num_workers": 0},
            "tracking": {"run_dir": str(tmp_path / "runs")}}
    return load_config(base, overrides=overrides)


@pytest.fixture
def count_forwards(monkeypatch):
    """The number of `forward_features` calls of the i3d_tiny backbone class, from now on."""
    from dear_ray.models.backbones import create_backbone

    cls = type(create_backbone("i3d_tiny"))
    original, calls = cls.forward_features, []

    def counted(self, x):
        calls.append(x.shape[0])
        return original(self, x)

    monkeypatch.setattr(cls, "forward_features", counted)
    return calls


def _key(cfg, split="train", *, weights="w", kind="vectors", precision="fp32", view=0):
    return fc.entry_key(fc.entry_inputs(cfg, split, weights=weights, kind=kind,
                                        precision=precision, view=view))


def test_each_input_changes_the_key_and_other_fields_do_not(synth_root, tmp_path):
    cfg = _config(synth_root, tmp_path)
    base = _key(cfg)
    changed = {
        "backbone": _key(cfg.override({"model.backbone": "r3d18_tiny"})),
        "backbone_options": _key(cfg.override({"model.backbone_options": {"width": 8}})),
        "weights": _key(cfg, weights="w2"),
        "kind": _key(cfg, kind="maps"),
        "precision": _key(cfg, precision="bf16"),
        "view (epoch)": _key(cfg, view=1),
        "split": _key(cfg, "val"),
        "clip_len": _key(cfg.override({"data.clip_len": 4})),
        "frame_interval": _key(cfg.override({"data.frame_interval": 2})),
        "crop_size": _key(cfg.override({"data.crop_size": 28})),
        "train_crop": _key(cfg.override({"data.train_crop": "center"})),
        "flip": _key(cfg.override({"data.flip": True})),
        "mean": _key(cfg.override({"data.mean": [0.0, 0.0, 0.0]})),
        "resize": _key(cfg.override({"data.resize": "antialias"})),
        "feature_cache_seed": _key(cfg.override({"model.feature_cache_seed": 5})),
        "seed (views drawn with it)": _key(cfg.override({"seed": 6})),
    }
    assert all(k != base for k in changed.values()), [n for n, k in changed.items() if k == base]
    assert len(set(changed.values())) == len(changed)
    # test mode: views, rounding and test sizes count; the seed does not (deterministic views)
    test = _key(cfg, "test", view=None)
    assert _key(cfg.override({"data.test_views": {"num_clips": 1}}), "test", view=None) != test
    assert _key(cfg.override({"data.test_scale_short": 40}), "test", view=None) != test
    assert _key(cfg.override({"seed": 3}), "test", view=None) == test
    # unrelated fields: head, optimiser, dropout, passes, the trial's seed with a cache seed
    pinned = cfg.override({"model.feature_cache_seed": 0})
    for field, value in (("model.head", "edl"), ("optim.lr", 0.5), ("optim.epochs", 9),
                         ("model.dropout", 0.1), ("eval.stochastic_passes", 7), ("seed", 11),
                         ("name", "other")):
        assert _key(pinned.override({field: value})) == _key(pinned), field


def test_the_split_list_content_enters_the_key(synth_root, tmp_path):
    lists = tmp_path / "lists"
    lists.mkdir()
    shutil.copy(synth_root / "train.txt", lists / "train.txt")
    cfg = _config(synth_root, tmp_path, **{"data.train_list": str(lists / "train.txt")})
    before = _key(cfg)
    lines = (lists / "train.txt").read_text().splitlines()
    (lists / "train.txt").write_text("\n".join(lines[:-1]) + "\n")
    assert _key(cfg) != before


def test_weights_hash_follows_the_backbone_tensors():
    model = build_recognizer(num_classes=3, backbone="i3d_tiny", head="softmax")
    before = fc.weights_hash(model.backbone)
    assert fc.weights_hash(model.backbone) == before
    with torch.no_grad():
        next(model.backbone.parameters()).view(-1)[0] += 1.0
    assert fc.weights_hash(model.backbone) != before


@pytest.mark.parametrize("head, options, exact", [
    ("softmax", {}, True),  # pooled fp32 vectors: the very numbers
    ("dear", {"head_options": {"temporal_kernel": 1}}, False),  # fp16 maps
    ("softmax", {"pooling": "attentive", "pooling_options": {"depth": 1, "num_heads": 2}}, False),
])
def test_evaluation_from_the_cache_equals_the_live_backbone(synth_root, tmp_path, head, options,
                                                             exact):
    cfg = _config(synth_root, tmp_path, **{"model.head": head,
                                           **{f"model.{k}": v for k, v in options.items()}})
    torch.manual_seed(0)
    model = build_recognizer(num_classes=3, **cfg.model.recognizer_options())
    device = torch.device("cpu")
    live = {s: predict_distributed(model, cfg, s, num_classes=3, device=device, amp=False)
            for s in ("test", "unknown")}
    attach_feature_cache(model, cfg, 3, device, False)
    assert cached_entries(model) is not None
    for split, want in live.items():
        got = predict_distributed(model, cfg, split, num_classes=3, device=device, amp=False)
        assert got.video_ids == want.video_ids
        for name in ("logits", "features", "sample_logits"):
            a, b = getattr(got, name), getattr(want, name)
            if a is None:
                assert b is None
            elif exact:
                np.testing.assert_array_equal(a, b, err_msg=f"{split} {name}")
            else:
                np.testing.assert_allclose(a, b, rtol=2e-3, atol=2e-3, err_msg=f"{split} {name}")


def test_training_views_are_the_training_pipeline_draws_of_each_epoch(synth_root, tmp_path):
    cfg = _config(synth_root, tmp_path, **{"data.flip": True, "seed": 3})
    model = build_recognizer(num_classes=3, **cfg.model.recognizer_options())
    live = model.backbone
    attach_feature_cache(model, cfg, 3, torch.device("cpu"), False)
    cached = build_dataset(cfg, "train", test_mode=False, num_classes=3,
                           features=cached_entries(model))
    videos = build_dataset(cfg, "train", test_mode=False, num_classes=3)
    for epoch in (0, 1):
        cached.set_epoch(epoch)
        videos.set_epoch(epoch)
        for i in (0, 5):
            with torch.no_grad():
                want = live.forward_features(videos[i]["clip"][None]).maps[0].mean(dim=(2, 3, 4))
            np.testing.assert_allclose(cached[i]["clip"].flatten(), want[0], rtol=1e-5,
                                       atol=1e-6)
    assert not torch.equal(cached[0]["clip"], (cached.set_epoch(0), cached[0]["clip"])[1])
    with pytest.raises(ValueError, match="epochs 0..1, not epoch 2"):
        cached.set_epoch(2)


def test_two_heads_share_the_cache_and_the_second_trial_runs_no_backbone(
        synth_root, tmp_path, monkeypatch, count_forwards):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    weights = tmp_path / "backbone.pth"  # one backbone for both trials, whatever their seeds
    torch.save({"state_dict": build_recognizer(num_classes=3, backbone="i3d_tiny",
                                               head="softmax").state_dict()}, weights)
    first = _config(synth_root, tmp_path, **{"name": "a", "model.feature_cache_seed": 0,
                                             "model.pretrained": str(weights)})
    out = driver.run_training(first)
    built = len(count_forwards)
    assert built > 0 and out["test_top1"] >= 0.0
    count_forwards.clear()
    second = first.override({"name": "b", "model.head": "edl", "seed": 1})
    out = driver.run_training(second)
    assert count_forwards == []  # every split and training view came from the cache
    store = read_score_store(stores_dir(second, "b") / "test.parquet")
    assert store.meta.head == "edl" and len(store.video_ids) > 0
    entries = [p for p in fc.cache_dir(first).iterdir() if p.is_dir() and len(p.name) == 64]
    assert len(entries) == 2 + len(first.eval_splits())  # two training views + scored splits


def test_a_broken_entry_is_rebuilt_with_a_warning(synth_root, tmp_path, caplog, count_forwards):
    cfg = _config(synth_root, tmp_path, **{"eval.splits": ["test"], "optim.epochs": 1})
    model = build_recognizer(num_classes=3, **cfg.model.recognizer_options())
    attach_feature_cache(model, cfg, 3, torch.device("cpu"), False)
    entries = cached_entries(model)
    test = entries[("test", None)]
    with open(test / fc.FEATURES, "r+b") as f:  # a truncated array
        f.truncate(200)
    (entries[("train", 0)] / fc.MANIFEST).unlink()  # a build that died before its manifest
    stale = test.parent / f".tmp-{test.name}-999-dead"  # the folder of a builder that died
    stale.mkdir()
    count_forwards.clear()
    fresh = build_recognizer(num_classes=3, **cfg.model.recognizer_options())
    fresh.load_state_dict(model.state_dict())
    with caplog.at_level(logging.WARNING, logger="dear_ray.train.feature_cache"):
        attach_feature_cache(fresh, cfg, 3, torch.device("cpu"), False)
    warned = [r.getMessage() for r in caplog.records if "rebuilding" in r.getMessage()]
    assert len(warned) == 2 and any(fc.MANIFEST in m for m in warned)
    assert count_forwards  # rebuilt by running the backbone
    for folder in cached_entries(fresh).values():
        assert fc.check_entry(folder, folder.name) is None
    assert not stale.exists()


def test_concurrent_builders_build_an_entry_once(tmp_path):
    built = []

    def build(folder):
        built.append(folder)
        time.sleep(0.2)
        np.save(folder / fc.FEATURES, np.zeros((2, 3), np.float32))
        return {"shape": [2, 3], "dtype": "float32", "bad": []}

    results = []
    threads = [threading.Thread(target=lambda: results.append(
        fc.ensure_entry(tmp_path, {"x": 1}, build))) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(built) == 1 and len(set(results)) == 1
    assert fc.check_entry(results[0], fc.entry_key({"x": 1})) is None
    assert not list(tmp_path.glob(".tmp-*"))


@pytest.mark.parametrize("overrides, words", [
    ({"model.freeze_backbone": False}, ["model.feature_cache", "model.freeze_backbone"]),
    ({"model.head": "psl"}, ["model.feature_cache", "model.head: psl"]),
    ({"model.head": "sdn", "data.scene_labels": "scene_labels.npy",
      "data.detections": "detections.npy"}, ["model.feature_cache", "data.detections"]),
    ({"model.feature_cache": "off", "model.feature_cache_seed": 1},
     ["model.feature_cache_seed", "model.feature_cache is off"]),
])
def test_the_config_rejects_a_cache_it_cannot_honour(synth_root, tmp_path, overrides, words):
    with pytest.raises(ConfigError) as err:
        _config(synth_root, tmp_path, **overrides)
    assert all(w in str(err.value) for w in words), str(err.value)


def test_yaml_booleans_and_the_default_folder(synth_root, tmp_path):
    cfg = _config(synth_root, tmp_path, **{"model.feature_cache": True})
    assert cfg.model.feature_cache == "on"
    assert fc.cache_dir(cfg) == tmp_path / "runs" / "feature_cache"
    mine = cfg.override({"model.feature_cache_dir": str(tmp_path / "mine")})
    assert fc.cache_dir(mine) == tmp_path / "mine"
