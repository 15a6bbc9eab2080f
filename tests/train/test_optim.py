"""Tests of dear_ray.train.optim: parameter groups and lr schedules against hand computations."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from dear_ray.config import load_config
from dear_ray.train.optim import build_optimizer, build_scheduler, lr_factor, param_groups


class _Toy(nn.Module):
    """A backbone + classifier with the recognizer's naming and classifier contract."""

    def __init__(self) -> None:
        super().__init__()
        self.backbone = nn.Linear(4, 3)
        self.cls_head = nn.Module()
        self.cls_head.fc_cls = nn.Linear(3, 2)

    def classifier_parameter_names(self) -> set[str]:
        return {"cls_head.fc_cls.weight", "cls_head.fc_cls.bias"}


def _optim(**kw):
    return load_config({}, overrides={f"optim.{k}": v for k, v in kw.items()}).optim


def test_classifier_lr_multiplier_applies_by_name():
    model = _Toy()
    opt = build_optimizer(model, _optim(lr=0.01, classifier_lr_mult=5.0, nesterov=True))
    assert isinstance(opt, torch.optim.SGD)
    by_name = {g["name"]: g for g in opt.param_groups}
    assert by_name["classifier"]["lr"] == pytest.approx(0.05)
    assert by_name["backbone_and_heads"]["lr"] == pytest.approx(0.01)
    assert {id(p) for p in by_name["classifier"]["params"]} == \
        {id(model.cls_head.fc_cls.weight), id(model.cls_head.fc_cls.bias)}
    assert {id(p) for p in by_name["backbone_and_heads"]["params"]} == \
        {id(model.backbone.weight), id(model.backbone.bias)}
    assert all(g["momentum"] == 0.9 and g["nesterov"] and g["weight_decay"] == 1e-4
               for g in opt.param_groups)


def test_frozen_parameters_and_adamw():
    model = _Toy()
    model.backbone.requires_grad_(False)
    groups = param_groups(model, _optim())
    assert [g["name"] for g in groups] == ["classifier"]
    opt = build_optimizer(model, _optim(optimizer="adamw", lr=1e-3))
    assert isinstance(opt, torch.optim.AdamW) and opt.param_groups[0]["lr"] == 1e-3


def test_unknown_classifier_name_is_an_error():
    model = _Toy()
    model.classifier_parameter_names = lambda: {"cls_head.fc.weight"}
    with pytest.raises(ValueError, match=r"cls_head\.fc\.weight"):
        param_groups(model, _optim())


def test_ddp_wrapped_names_are_unwrapped():
    model = _Toy()
    wrapped = nn.DataParallel(model)  # same `.module` unwrapping as DDP, no process group needed
    groups = param_groups(wrapped, _optim(classifier_lr_mult=2.0))
    assert [g["lr_mult"] for g in groups] == [1.0, 2.0]


def test_step_schedule_values():
    kw = dict(schedule="step", epochs=50, milestones=(20, 40), gamma=0.1)
    assert lr_factor(0, **kw) == 1.0
    assert lr_factor(19.99, **kw) == 1.0
    assert lr_factor(20, **kw) == pytest.approx(0.1)
    assert lr_factor(39, **kw) == pytest.approx(0.1)
    assert lr_factor(45, **kw) == pytest.approx(0.01)


def test_cosine_with_linear_warmup_values():
    kw = dict(schedule="cosine", epochs=10, warmup_epochs=2, warmup_start=0.1)
    # t = 0: warm-up starts at 10% of the cosine value (cos(0) = 1)
    assert lr_factor(0, **kw) == pytest.approx(0.1)
    # t = 1: cosine 0.5 (1 + cos(pi/10)), warm-up factor 1 - 0.5 * 0.9 = 0.55
    assert lr_factor(1, **kw) == pytest.approx(0.5 * (1 + math.cos(math.pi / 10)) * 0.55)
    # t = 5: no warm-up left, half way down the cosine
    assert lr_factor(5, **kw) == pytest.approx(0.5)
    assert lr_factor(10, **kw) == pytest.approx(0.0, abs=1e-12)
    assert lr_factor(10, schedule="cosine", epochs=10, min_ratio=0.1) == pytest.approx(0.1)
    with pytest.raises(ValueError, match="poly"):
        lr_factor(0, schedule="poly", epochs=1)


def _lrs(cfg, iters: int, steps: int) -> list[float]:
    model = _Toy()
    opt = build_optimizer(model, cfg)
    sched = build_scheduler(opt, cfg, iters)
    out = []
    for _ in range(steps):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return out


def test_scheduler_per_iteration_and_per_epoch():
    cfg = _optim(lr=0.1, epochs=4, schedule="step", milestones=[1, 3], gamma=0.5,
                 warmup_epochs=1, warmup_start=0.0)
    per_iter = _lrs(cfg, iters=4, steps=16)
    # warm-up over the first epoch in quarter steps: 0, 0.025, 0.05, 0.075
    assert per_iter[:4] == pytest.approx([0.0, 0.025, 0.05, 0.075])
    assert per_iter[4:12] == pytest.approx([0.05] * 8)
    assert per_iter[12:] == pytest.approx([0.025] * 4)
    per_epoch = _lrs(cfg.model_copy(update={"step_per": "epoch"}), iters=4, steps=16)
    # the factor only moves at epoch boundaries: epoch 0 has t = 0 (warm-up start 0)
    assert per_epoch == pytest.approx([0.0] * 4 + [0.05] * 8 + [0.025] * 4)


def test_classifier_group_follows_the_schedule_with_its_multiplier():
    cfg = _optim(lr=0.1, epochs=2, milestones=[1], gamma=0.1, classifier_lr_mult=5.0)
    opt = build_optimizer(_Toy(), cfg)
    sched = build_scheduler(opt, cfg, iters_per_epoch=1)
    opt.step()
    sched.step()
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([0.01, 0.05])
    with pytest.raises(ValueError, match="iters_per_epoch must be >= 1"):
        build_scheduler(opt, cfg, 0)


def test_new_layers_warm_up_trains_only_new_parameters_at_new_layer_lr():
    """SDN: for the warm-up epochs only what the checkpoint did not provide trains (at
    new_layer_lr), then everything follows the schedule (here step at epoch 3)."""
    model = _Toy()
    model.cls_head.scene_mlp = nn.Linear(3, 5)  # a new layer
    new = {"cls_head.scene_mlp.weight", "cls_head.scene_mlp.bias",
           "cls_head.fc_cls.weight", "cls_head.fc_cls.bias"}  # the classifier was replaced
    cfg = _optim(lr=0.001, classifier_lr_mult=10.0, new_layers_warmup_epochs=2,
                 new_layer_lr=0.01, epochs=5, milestones=[3], step_per="epoch")
    opt = build_optimizer(model, cfg, new)
    groups = {g["name"]: g for g in opt.param_groups}
    assert set(groups) == {"backbone_and_heads", "new_backbone_and_heads", "new_classifier"}
    assert {id(p) for p in groups["new_backbone_and_heads"]["params"]} == \
        {id(model.cls_head.scene_mlp.weight), id(model.cls_head.scene_mlp.bias)}
    sched = build_scheduler(opt, cfg, iters_per_epoch=3)
    seen = []
    for _ in range(15):
        seen.append({n: g["lr"] for n, g in zip(groups, opt.param_groups, strict=True)})
        opt.step()
        sched.step()
    expected_epoch = [
        {"backbone_and_heads": 0.0, "new_backbone_and_heads": 0.01, "new_classifier": 0.01},
        {"backbone_and_heads": 0.0, "new_backbone_and_heads": 0.01, "new_classifier": 0.01},
        {"backbone_and_heads": 0.001, "new_backbone_and_heads": 0.001, "new_classifier": 0.01},
        {"backbone_and_heads": 0.0001, "new_backbone_and_heads": 0.0001, "new_classifier": 0.001},
        {"backbone_and_heads": 0.0001, "new_backbone_and_heads": 0.0001, "new_classifier": 0.001},
    ]
    for step, lrs in enumerate(seen):
        assert lrs == pytest.approx(expected_epoch[step // 3]), step

    # nothing pretrained: every parameter is new and trains during the warm-up
    everything = build_optimizer(_Toy(), cfg)
    assert {g["name"] for g in everything.param_groups} == {"new_backbone_and_heads",
                                                            "new_classifier"}
    with pytest.raises(ValueError, match="set optim.new_layers_warmup_epochs > 0"):
        _optim(new_layer_lr=0.01)
