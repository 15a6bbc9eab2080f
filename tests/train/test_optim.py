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


# ------------------------------------------------------------------------------------------------
# Issue 10 items 12-14: TSM parameter groups, mmcv's epoch cosine after an iteration warm-up,
# SDN's SGD dampening


def _tsm_dear():
    from dear_ray.models import build_recognizer

    torch.manual_seed(0)
    return build_recognizer(backbone="tsm_tiny", head="dear", num_classes=3,
                            head_options={"temporal_kernel": 1})


def _released_tsm_table(names: list[str], last_fc: str) -> dict[str, tuple[float, float]]:
    """(lr multiplier, wd multiplier) per parameter, derived by hand from MMAction2 0.x
    TSMOptimizerConstructor(fc_lr5=True) read on DEAR's TSM model: the stem conv (no bias) at
    (1, 1); every BatchNorm weight/bias at (1, 0); every other conv / Linear weight at (1, 1) and
    bias at (2, 0); the last Linear registered (`last_fc`) at 5x weight / 10x bias (wd 1 / 0)."""
    table = {}
    for n in names:
        module, leaf = n.rsplit(".", 1)
        if n == "backbone.conv1.conv.weight":
            table[n] = (1.0, 1.0)
        elif module.endswith("bn"):               # ConvModule norms: `<...>.bn.weight|bias`
            table[n] = (1.0, 0.0)
        elif module == last_fc:
            table[n] = (5.0, 1.0) if leaf == "weight" else (10.0, 0.0)
        else:
            table[n] = (1.0, 1.0) if leaf == "weight" else (2.0, 0.0)
    return table


def _lr_wd(opt, model) -> dict[str, tuple[float, float]]:
    by_id = {id(p): (g["lr"], g["weight_decay"]) for g in opt.param_groups for p in g["params"]}
    return {n: by_id[id(p)] for n, p in model.named_parameters()}


@pytest.mark.parametrize(("mode", "last_fc"), [
    ("tsm_fc_lr5", "cls_head.debias_head.f3_fc"),   # released: the debias head's f3 fc
    ("tsm_fc_lr5_classifier", "cls_head.fc_cls")])  # corrected: the classifier
def test_tsm_fc_lr5_groups_on_the_dear_model_match_the_hand_table(mode, last_fc):
    model = _tsm_dear()
    lr, wd = 1e-3, 1e-4
    opt = build_optimizer(model, _optim(lr=lr, weight_decay=wd, param_groups=mode))
    got = _lr_wd(opt, model)
    expected = {n: (lr * a, wd * b)
                for n, (a, b) in _released_tsm_table(list(got), last_fc).items()}
    assert len(got) == 68
    wrong = [n for n in got if got[n] != pytest.approx(expected[n], abs=1e-15)]
    assert wrong == []
    counts = {g["name"]: len(g["params"]) for g in opt.param_groups}
    # 1 stem conv; 16 block convs + 3 CED convs + fc_cls and two of the three CED fcs; their 3
    # biases; 17 backbone + 3 CED BatchNorms x (weight, bias); the promoted fc
    assert counts == {"first_conv_weight": 1, "normal_weight": 22, "normal_bias": 3, "bn": 40,
                      "lr5_weight": 1, "lr10_bias": 1}
    assert [g["name"] for g in opt.param_groups] == list(counts)   # MMAction2's group order


def test_tsm_fc_lr5_on_the_softmax_model_promotes_fc_cls():
    from dear_ray.models import build_recognizer

    model = build_recognizer(backbone="tsm_tiny", head="softmax", num_classes=3)
    got = _lr_wd(build_optimizer(model, _optim(lr=1.0, weight_decay=1.0,
                                               param_groups="tsm_fc_lr5")), model)
    assert got == _released_tsm_table(list(got), "cls_head.fc_cls")
    assert len(got) == 53


def test_tsm_fc_lr5_first_conv_bias_and_unknown_parameter_holders():
    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.stem = nn.Conv2d(3, 4, 1)           # first conv, with a bias
            self.norm = nn.GroupNorm(2, 4)
            self.cls_head = nn.Module()
            self.cls_head.fc_cls = nn.Linear(4, 2)
            self.tail = nn.Conv1d(2, 2, 1)           # a conv after the last Linear

    from dear_ray.train.optim import tsm_fc_lr5_rules

    rules = {n: r[0] for n, r in tsm_fc_lr5_rules(Net()).items()}
    # MMAction2 pops the last normal weight / bias whatever module they belong to
    assert rules == {"stem.weight": "first_conv_weight", "stem.bias": "first_conv_bias",
                     "norm.weight": "bn", "norm.bias": "bn",
                     "cls_head.fc_cls.weight": "normal_weight",
                     "cls_head.fc_cls.bias": "normal_bias",
                     "tail.weight": "lr5_weight", "tail.bias": "lr10_bias"}
    fixed = {n: r[0] for n, r in tsm_fc_lr5_rules(Net(), target="classifier").items()}
    assert (fixed["cls_head.fc_cls.weight"], fixed["tail.weight"]) == ("lr5_weight",
                                                                      "normal_weight")
    from dear_ray.models import build_recognizer

    rpl = build_recognizer(backbone="tsm_tiny", head="rpl", num_classes=3)
    with pytest.raises(ValueError, match=r"module cls_head \(.*\) holds parameters"):
        build_optimizer(rpl, _optim(param_groups="tsm_fc_lr5"))


def test_mmcv_epoch_cosine_after_iteration_linear_warm_up():
    """mmcv 1.x CosineAnnealing(by_epoch=True, min_lr=0, warmup='linear', warmup_by_epoch=True,
    warmup_iters=2, warmup_ratio=0.1), 4 epochs of 2 iterations (DEAR's SlowFast, shortened):
    lr(i) = cos_e * (1 - (1 - i/4) * 0.9) for global iteration i < 4, else cos_e, with
    cos_e = (1 + cos(pi e / 4)) / 2 at the epoch e = i // 2."""
    c1, c3 = 0.5 * (1 + math.cos(math.pi / 4)), 0.5 * (1 + math.cos(3 * math.pi / 4))
    expected = [0.1, 0.325, c1 * 0.55, c1 * 0.775, 0.5, 0.5, c3, c3]
    cfg = _optim(lr=1.0, epochs=4, schedule="cosine", warmup_epochs=2, warmup_start=0.1,
                 step_per="epoch", warmup_per="iteration")
    assert _lrs(cfg, iters=2, steps=8) == pytest.approx(expected)
    # the sweep's former form (cosine per iteration) and the all-per-epoch form both differ
    per_iteration = _lrs(cfg.model_copy(update={"step_per": "iteration", "warmup_per": None}),
                         iters=2, steps=8)
    per_epoch = _lrs(cfg.model_copy(update={"warmup_per": None}), iters=2, steps=8)
    assert per_iteration[1] != pytest.approx(expected[1])
    assert per_epoch[1] == pytest.approx(0.1) and expected[1] != pytest.approx(0.1)


def test_sgd_dampening_as_sdn():
    """SDN train.py: SGD(momentum 0.9, dampening 0.9). torch's buffer starts at the first grad,
    then b <- 0.9 b + (1 - 0.9) g. Gradients 1 then 3 on a scalar at lr 0.1, no weight decay:
    p1 = -0.1 * 1; b2 = 0.9 * 1 + 0.1 * 3 = 1.2; p2 = p1 - 0.1 * 1.2 = -0.22."""
    model = _Toy()
    cfg = _optim(lr=0.1, weight_decay=0.0, dampening=0.9)
    opt = build_optimizer(model, cfg)
    assert all(g["dampening"] == 0.9 for g in opt.param_groups)
    p = model.backbone.bias
    with torch.no_grad():
        p.zero_()
    for grad in (1.0, 3.0):
        for q in model.parameters():
            q.grad = torch.zeros_like(q)
        p.grad = torch.full_like(p, grad)
        opt.step()
    assert p.detach().tolist() == pytest.approx([-0.22] * 3)
