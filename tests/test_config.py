"""Tests of dear_ray.config: defaults, round trips, overrides and validation errors."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import yaml

from dear_ray.config import ConfigError, ExperimentConfig, load_config, save_config
from dear_ray.models import list_backbones, list_heads


def test_defaults_validate_and_paths_are_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = load_config({})
    assert cfg.optim.momentum == 0.9 and cfg.optim.weight_decay == 1e-4
    assert cfg.eval.stochastic_passes == 10
    assert (cfg.data.test_crop_size, cfg.data.test_scale_short, cfg.data.segment_sampling) == \
        (None, None, "uniform")
    assert (cfg.optim.new_layers_warmup_epochs, cfg.optim.new_layer_lr) == (0, None)
    assert cfg.data.data_root == str(tmp_path / "data" / "synth")
    assert cfg.tracking.run_dir == str(tmp_path / "runs")
    assert cfg.run_root() == tmp_path / "runs" / "default"
    assert cfg.override({"model.pretrained": "ck.pth"}).model.pretrained == \
        str(tmp_path / "ck.pth")
    assert cfg.model.backbone in list_backbones() and cfg.model.head in list_heads()


def test_to_dict_round_trips_through_yaml(tmp_path):
    cfg = load_config({"name": "x", "optim": {"milestones": [2, 4], "epochs": 6},
                       "data": {"unknown": {"hmdb": "/abs/hmdb.txt"},
                                "test_views": {"num_clips": 2, "num_crops": 3}}})
    path = save_config(cfg, tmp_path / "sub" / "cfg.yaml")
    again = load_config(path)
    assert again == cfg
    assert yaml.safe_load(path.read_text())["optim"]["milestones"] == [2, 4]
    assert load_config(cfg.to_dict()) == cfg


def test_frozen_and_override_returns_validated_copy():
    cfg = load_config({})
    with pytest.raises(Exception, match="frozen"):
        cfg.optim.lr = 0.5  # type: ignore[misc]
    new = cfg.override({"optim.lr": 1e-3, "data.test_views.num_crops": 3,
                        "data.unknown.hmdb": "hmdb.txt"})
    assert new.optim.lr == 1e-3 and cfg.optim.lr == 0.01
    assert new.data.test_views.num_crops == 3
    assert new.data.unknown == {"unknown": "unknown.txt", "hmdb": "hmdb.txt"}
    assert isinstance(new, ExperimentConfig)
    with pytest.raises(ConfigError, match=r"override 'seed.x': seed is 0, not a section"):
        cfg.override({"seed.x": 1})
    with pytest.raises(ConfigError, match=r"expected a dotted field path"):
        cfg.override({"optim..lr": 1})


def test_overrides_argument_of_load_config(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"seed": 3, "optim": {"lr": 0.1}}))
    cfg = load_config(path, overrides={"optim.lr": 0.2, "seed": 4})
    assert (cfg.seed, cfg.optim.lr) == (4, 0.2)


@pytest.mark.parametrize(("overrides", "pieces"), [
    ({"optim.lrr": 0.1}, ["optim.lrr", "unknown field", "allowed:", "lr,", "0.1"]),
    ({"optim.lr": -1.0}, ["optim.lr", "greater than 0", "-1.0"]),
    ({"optim.schedule": "poly"}, ["optim.schedule", "'step' or 'cosine'", "'poly'"]),
    ({"optim.optimizer": "adam"}, ["optim.optimizer", "'sgd' or 'adamw'", "'adam'"]),
    ({"data.sampler": "uniform"}, ["data.sampler", "'sample_frames', 'dense' or 'segments'"]),
    ({"data.test_views.num_crops": 2}, ["data.test_views.num_crops", "1, 3 or 10", "2"]),
    ({"data.num_workers": -1}, ["data.num_workers", "greater than or equal to 0", "-1"]),
    ({"data.max_bad_fraction": 1.5}, ["data.max_bad_fraction", "1.5"]),
    ({"data.multiprocessing_context": "fork"}, ["data.multiprocessing_context", "'forkserver'"]),
    ({"model.dropout": 1.0}, ["model.dropout", "less than 1"]),
    ({"resources.max_failures": -2}, ["resources.max_failures", "-2"]),
    ({"eval.stochastic_passes": 0}, ["eval.stochastic_passes", "0"]),
    ({"checkpoint.num_to_keep": 0}, ["checkpoint.num_to_keep", "0"]),
    ({"optim.milestones": [5, 3]}, ["optim.milestones [5, 3]", "strictly increasing"]),
    ({"optim.milestones": [20]}, ["optim.milestones [20]", "< optim.epochs (10)"]),
    ({"optim.warmup_epochs": 10}, ["optim.warmup_epochs 10", "< optim.epochs"]),
    ({"optim.nesterov": True, "optim.optimizer": "adamw"}, ["optim.nesterov", "sgd"]),
    ({"optim.min_lr": 0.5}, ["optim.min_lr 0.5", "optim.lr 0.01"]),
    ({"data.crop_size": 128}, ["data.crop_size 128", "data.scale_short 64"]),
    ({"data.mask_ratio": 0.5}, ["data.mask_ratio 0.5", "data.detections"]),
    # test resolution: unset fields take crop_size 56 / scale_short 64
    ({"data.test_crop_size": 72}, ["data.test_crop_size 72", "data.test_scale_short 64"]),
    ({"data.test_scale_short": 48}, ["data.test_crop_size 56", "data.test_scale_short 48"]),
    ({"data.test_crop_size": 4}, ["data.test_crop_size", "greater than or equal to 8", "4"]),
    ({"data.multiscale.scales": [1.0, 1.2]}, ["data.multiscale.scales", "(0, 1]", "[1.0, 1.2]"]),
    ({"data.multiscale.num_fixed_crops": 4}, ["data.multiscale.num_fixed_crops", "5 or 13", "4"]),
    ({"data.segment_sampling": "tsn"}, ["data.segment_sampling", "'uniform' or 'dense'", "'tsn'"]),
    ({"data.sampler": "segments", "data.segment_sampling": "dense", "data.sample_range": 4},
     ["data.sample_range 4", "data.num_segments 8", "sample_range >= num_segments"]),
    ({"data.sampler": "segments", "data.test_views.num_clips": 3, "data.sample_range": 6},
     ["data.sample_range 6", "test_views.num_clips > 1"]),
    ({"data.test_sampler": "segments", "data.num_segments": 4},
     ["data.test_sampler 'segments'", "clips of 4 frames", "data.sampler 'sample_frames' of 8"]),
    ({"data.test_sampler": "frames"}, ["data.test_sampler", "'sample_frames', 'dense' or "
                                       "'segments'", "'frames'"]),
    ({"optim.new_layers_warmup_epochs": 10}, ["optim.new_layers_warmup_epochs 10",
                                              "< optim.epochs (10)"]),
    ({"optim.new_layer_lr": 0.1}, ["optim.new_layer_lr", "new_layers_warmup_epochs > 0"]),
    ({"optim.new_layer_lr": 0.0, "optim.new_layers_warmup_epochs": 1},
     ["optim.new_layer_lr", "greater than 0"]),
    ({"data.num_classes": None, "data.classes_file": None}, ["data.num_classes",
                                                             "data.classes_file"]),
    ({"data.unknown": {"test": "x.txt"}}, ["data.unknown", "'test'", "known split names"]),
    ({"eval.splits": ["test", "hmdb"]}, ["eval.splits", "'hmdb'", "configured splits",
                                         "'unknown'"]),
    ({"eval.every_n_epochs": 1, "data.val_list": None}, ["data.val_list", "eval.every_n_epochs"]),
    ({"model.head": "sdn"}, ["data.scene_labels", "sdn"]),
    ({"debug.fail_at_epoch": 12}, ["debug.fail_at_epoch 12", "optim.epochs (10)"]),
    ({"debug.fail_at_epoch": 1, "resources.num_workers": 0}, ["debug.fail_at_epoch",
                                                              "num_workers >= 1"]),
    ({"resources.max_failures": 2, "resources.num_workers": 0},
     ["resources.max_failures 2", "num_workers 0", "sweep's max_failures"]),
    ({"name": "has space"}, ["name", "letters, digits", "'has space'"]),
    ({"bogus": 1}, ["bogus", "unknown field", "optim", "resources"]),
    ({"seed.x": 1}, ["seed", "valid integer", "{'x': 1}"]),
])
def test_validation_errors_name_field_value_and_allowed(overrides, pieces):
    with pytest.raises(ConfigError) as info:
        load_config({}, overrides=overrides)
    message = str(info.value)
    for piece in pieces:
        assert piece in message, (piece, message)


def test_unknown_backbone_and_head_list_the_registered_names():
    with pytest.raises(ConfigError) as info:
        load_config({"model": {"backbone": "resnet9000"}})
    message = str(info.value)
    assert "model.backbone" in message and "'resnet9000'" in message
    assert all(name in message for name in list_backbones())
    with pytest.raises(ConfigError) as info:
        load_config({}, overrides={"model.head": "nope"})
    assert all(name in str(info.value) for name in list_heads())


def test_several_errors_are_all_listed():
    with pytest.raises(ConfigError) as info:
        load_config({"optim": {"lr": 0, "momentum": 2}, "seed": -1})
    message = str(info.value)
    assert "optim.lr" in message and "optim.momentum" in message and "seed" in message


def test_file_errors_name_the_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("optim: {lr: -3}\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml: optim\.lr"):
        load_config(bad)
    bad.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml: expected a mapping"):
        load_config(bad)
    bad.write_text("optim: {lr: [\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml: not valid YAML"):
        load_config(bad)
    with pytest.raises(FileNotFoundError, match="missing.yaml"):
        load_config(tmp_path / "missing.yaml")
    assert isinstance(ConfigError("x"), ValueError)


def test_split_lists_and_eval_splits(tmp_path):
    cfg = load_config({"data": {"data_root": str(tmp_path), "test_shifted_list": None,
                                "unknown": {"hmdb": "/elsewhere/hmdb.txt", "mit": "mit.txt"}}})
    lists = cfg.data.split_lists()
    assert lists["train"] == tmp_path / "train.txt"
    assert lists["hmdb"] == Path("/elsewhere/hmdb.txt")
    assert lists["mit"] == tmp_path / "mit.txt"
    assert "test_shifted" not in lists
    # the synthetic data set's static-bias splits come with it (data.static_bias)
    assert cfg.eval_splits() == ["train", "test", "test_scuba", "test_scufo", "hmdb", "mit"]
    assert cfg.override({"eval.splits": ["test", "mit"]}).eval_splits() == ["test", "mit"]


def test_experiment_name_defaults_to_config_name():
    cfg = load_config({"name": "abc"})
    assert cfg.experiment_name() == "abc"
    assert cfg.override({"tracking.experiment": "e"}).experiment_name() == "e"


# ------------------------------------------------------------------------------------------------
# Fidelity fields (issue 10): names, defaults, validation


def test_fidelity_fields_defaults():
    cfg = load_config({})
    assert cfg.data.mean == (123.675, 116.28, 103.53)      # MMAction2 img_norm_cfg
    assert cfg.data.std == (58.395, 57.12, 57.375)
    assert (cfg.data.mask_min_human_fraction, cfg.data.mask_min_box_score) == (0.7, 0.3)
    assert (cfg.eval.average_clips, cfg.eval.precision) == ("released", "fp32")
    assert (cfg.optim.dampening, cfg.optim.param_groups, cfg.optim.sdn_mask_step) == \
        (0.0, "default", "separate")
    assert cfg.optim.warmup_per is None


def test_flip_resolves_from_the_dataset_and_round_trips(tmp_path):
    synth = load_config({})
    assert synth.data.flip is False                 # mirror-pair motion classes
    ucf = synth.override({"data.dataset": "ucf101"})
    assert ucf.data.flip is True                    # "auto" survives the override's to_dict
    assert synth.to_dict()["data"]["flip"] is None
    assert load_config(save_config(ucf, tmp_path / "c.yaml")) == ucf
    explicit = load_config({"data": {"flip": True}})
    assert explicit.data.flip is True and explicit.to_dict()["data"]["flip"] is True
    assert explicit.override({"data.dataset": "ucf101"}).data.flip is True
    assert load_config({"data": {"dataset": "ucf101", "flip": False}}).data.flip is False
    again = pickle.loads(pickle.dumps(synth))      # Ray ships configs to workers pickled
    assert again == synth and again.to_dict()["data"]["flip"] is None


def test_normalisation_validation():
    sdn = load_config({"data": {"mean": [114.7748, 107.7354, 99.4750], "std": [1, 1, 1]}})
    assert sdn.data.mean == (114.7748, 107.7354, 99.4750) and sdn.data.std == (1.0, 1.0, 1.0)
    with pytest.raises(ConfigError, match=r"data\.std: .*stds > 0"):
        load_config({"data": {"std": [1, 0, 1]}})
    with pytest.raises(ConfigError, match=r"data\.mean: .*0-255"):
        load_config({"data": {"mean": [0.485, 0.456, 300.0]}})
    with pytest.raises(ConfigError, match=r"data\.mean"):
        load_config({"data": {"mean": [1.0, 2.0]}})


@pytest.mark.parametrize(("field", "value"), [
    ("data.mask_min_human_fraction", 1.5), ("data.mask_min_box_score", -0.1),
    ("eval.average_clips", "mean"), ("eval.precision", "bf16"),
    ("optim.param_groups", "tsm"), ("optim.sdn_mask_step", "both"),
    ("optim.dampening", 1.0), ("optim.warmup_per", "batch")])
def test_fidelity_fields_reject_bad_values(field, value):
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
        load_config({}, overrides={field: value})


def test_optim_cross_field_checks():
    assert load_config({"optim": {"dampening": 0.9}}).optim.dampening == 0.9   # SDN's SGD
    with pytest.raises(ConfigError, match=r"optim\.dampening 0\.9 needs optimizer sgd without "
                                          r"nesterov"):
        load_config({"optim": {"dampening": 0.9, "nesterov": True}})
    with pytest.raises(ConfigError, match=r"optim\.dampening"):
        load_config({"optim": {"dampening": 0.5, "optimizer": "adamw"}})
    with pytest.raises(ConfigError, match=r"optim\.param_groups 'tsm_fc_lr5' sets the classifier"):
        load_config({"optim": {"param_groups": "tsm_fc_lr5", "classifier_lr_mult": 5}})
    with pytest.raises(ConfigError, match=r"optim\.warmup_per 'iteration' needs optim\.warmup"):
        load_config({"optim": {"warmup_per": "iteration"}})
    ok = load_config({"optim": {"schedule": "cosine", "warmup_epochs": 2, "step_per": "epoch",
                                "warmup_per": "iteration", "param_groups": "tsm_fc_lr5_classifier",
                                "sdn_mask_step": "joint"}})
    assert (ok.optim.warmup_per, ok.optim.param_groups, ok.optim.sdn_mask_step) == \
        ("iteration", "tsm_fc_lr5_classifier", "joint")
