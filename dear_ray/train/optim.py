"""Optimiser and learning-rate schedule built from `OptimConfig` (docs/fidelity.md rows 11-14).

- Parameter groups (`optim.param_groups`), each with its own lr and weight decay:
  `default`: the classifier's parameters (named by `model.classifier_parameter_names()`, e.g. TSM's
  `cls_head.fc_cls.*`) at `lr * classifier_lr_mult`, every other trainable parameter at `lr`; all at
  `weight_decay` (mmcv's DefaultOptimizerConstructor without paramwise options, every DEAR config
  but TSM's DNN and DEAR). `tsm_fc_lr5` / `tsm_fc_lr5_classifier`: MMAction2 0.x's
  `TSMOptimizerConstructor` with `fc_lr5=True` (DEAR mmaction/core/optimizer/
  tsm_optimizer_constructor.py), see `tsm_fc_lr5_rules`.
- Schedules, as a factor of each group's base lr at fractional epoch t:
  `step`: gamma ** (number of milestones <= t); `cosine`: min_lr + (lr - min_lr)(1 + cos(pi t / E)) / 2
  over all E epochs (mmcv's CosineAnnealing); a linear warm-up over the first `warmup_epochs`
  multiplies by `1 - (1 - t_w / warmup_epochs)(1 - warmup_start)` (mmcv's linear warm-up, ratio
  `warmup_start`).
- The scheduler is stepped once per training batch; with `step_per: epoch` the schedule's t is
  floored (it only changes at epoch boundaries), with `iteration` it moves every batch. The
  warm-up's t_w does the same per `warmup_per` (default: as `step_per`). mmcv 1.x
  `LrUpdaterHook(by_epoch=True, warmup='linear', warmup_by_epoch=True, warmup_iters=W)` - DEAR's
  SlowFast - is `step_per: epoch, warmup_per: iteration`: at global iteration
  i < W * iters_per_epoch its lr is the epoch's cosine value times
  `1 - (1 - i / (W * iters_per_epoch))(1 - ratio)`, from i = W * iters_per_epoch the cosine value.
- SDN's new-layers warm-up (`new_layers_warmup_epochs` > 0): the parameters `model.pretrained` did
  not provide form their own groups (`new` True); for the first warm-up epochs the other groups'
  factor is 0 (frozen) and the new groups run at `new_layer_lr`; then every group follows the
  schedule above.
- SGD's `dampening` is `optim.dampening` (SDN train.py: 0.9 unless nesterov).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.modules.conv import _ConvNd

from dear_ray.config import OptimConfig

# (group name, lr multiplier, weight-decay multiplier) of one parameter
Rule = tuple[str, float, float]
# MMAction2 TSMOptimizerConstructor's groups, in its order
TSM_GROUPS: dict[str, tuple[float, float]] = {
    "first_conv_weight": (1.0, 1.0), "first_conv_bias": (2.0, 0.0),
    "normal_weight": (1.0, 1.0), "normal_bias": (2.0, 0.0), "bn": (1.0, 0.0),
    "lr5_weight": (5.0, 1.0), "lr10_bias": (10.0, 0.0),
}
TSM_CLASSIFIER = ("cls_head.fc_cls.weight", "cls_head.fc_cls.bias")


def unwrap_model(model: nn.Module) -> nn.Module:
    """The module inside a DistributedDataParallel / DataParallel wrapper (or the model itself)."""
    return model.module if isinstance(model, (nn.parallel.DistributedDataParallel,
                                              nn.DataParallel)) else model


def tsm_fc_lr5_rules(model: nn.Module, *, target: str = "last") -> dict[str, Rule]:
    """Every parameter's group under MMAction2 0.x `TSMOptimizerConstructor(fc_lr5=True)`.

    Walks `model.named_modules()` (registration order, as `model.modules()`): the first conv
    (any `_ConvNd`) gives `first_conv_weight` (lr, wd) and `first_conv_bias` (2 lr, 0); every later
    conv and every `nn.Linear` give `normal_weight` (lr, wd) and `normal_bias` (2 lr, 0); BatchNorm
    (any `_BatchNorm`) and GroupNorm parameters give `bn` (lr, 0). Then, with `target="last"`
    (released), the LAST normal weight and the LAST normal bias in that order move to `lr5_weight`
    (5 lr, wd) and `lr10_bias` (10 lr, 0): MMAction2 pops them off the lists, assuming they are
    cls_head's fc; in DEAR's TSM model they are the debias head's `f3_fc` (registered after
    `cls_head.fc_cls`). With `target="classifier"` (corrected) `cls_head.fc_cls` gets them instead.

    Returns:
        parameter name -> (group, lr multiplier, weight-decay multiplier), in module order.

    Raises:
        ValueError: a module other than conv / Linear / norm holds parameters itself (MMAction2
            raises for a leaf of a new type and silently leaves a container's own parameters out of
            the optimiser), there is no conv or Linear to promote, or `target="classifier"` and the
            model has no `cls_head.fc_cls`.
    """
    if target not in ("last", "classifier"):
        raise ValueError(f"tsm_fc_lr5_rules: target {target!r}; expected 'last' or 'classifier'")
    rules: dict[str, Rule] = {}
    weights: list[str] = []  # normal weights, module order
    biases: list[str] = []
    first_conv = True

    def rule(group: str) -> Rule:
        return (group, *TSM_GROUPS[group])

    for prefix, module in model.named_modules():
        own = [f"{prefix}.{n}" if prefix else n for n, _ in module.named_parameters(recurse=False)]
        weight, bias = (f"{prefix}.{n}" if prefix else n for n in ("weight", "bias"))
        if isinstance(module, _ConvNd | nn.Linear):
            has_bias = module.bias is not None
            if isinstance(module, _ConvNd) and first_conv:
                first_conv = False
                rules[weight] = rule("first_conv_weight")
                if has_bias:
                    rules[bias] = rule("first_conv_bias")
                continue
            weights.append(weight)
            if has_bias:
                biases.append(bias)
        elif isinstance(module, _BatchNorm | nn.GroupNorm):
            rules.update({name: rule("bn") for name in own})
        elif own:
            raise ValueError(f"tsm_fc_lr5: module {prefix or '(model)'} ({type(module).__name__}) "
                             f"holds parameters {own}; TSMOptimizerConstructor only knows conv, "
                             "Linear and norm layers (use optim.param_groups: default)")
    weight, bias = _promoted(weights, biases, target)
    promoted = {weight: rule("lr5_weight"), bias: rule("lr10_bias")}
    rules.update({n: rule("normal_weight") for n in weights})
    rules.update({n: rule("normal_bias") for n in biases})
    rules.update(promoted)
    return rules


def _promoted(weights: list[str], biases: list[str], target: str) -> tuple[str, str]:
    """The weight and bias that get 5x / 10x, taken out of the normal lists: the last ones
    (`last`, as MMAction2 pops them) or `cls_head.fc_cls`'s (`classifier`)."""
    if target == "last":
        if not weights or not biases:
            raise ValueError("tsm_fc_lr5: the model has no conv or Linear weight and bias after "
                             "the first conv to give 5x / 10x")
        return weights.pop(), biases.pop()
    if any(n not in weights + biases for n in TSM_CLASSIFIER):
        raise ValueError(f"tsm_fc_lr5_classifier: the model has no "
                         f"{' / '.join(TSM_CLASSIFIER)} (a Linear with a bias) to give 5x / 10x")
    weights.remove(TSM_CLASSIFIER[0])
    biases.remove(TSM_CLASSIFIER[1])
    return TSM_CLASSIFIER


def _default_rules(model: nn.Module, cfg: OptimConfig) -> dict[str, Rule]:
    classifier = set(model.classifier_parameter_names())
    named = dict(model.named_parameters())
    missing = sorted(classifier - set(named))
    if missing:
        raise ValueError(f"classifier_parameter_names() lists {missing}, which are not parameters "
                         f"of the model")
    return {n: ("classifier", cfg.classifier_lr_mult, 1.0) if n in classifier else
            ("backbone_and_heads", 1.0, 1.0) for n in named}


def parameter_rules(model: nn.Module, cfg: OptimConfig) -> dict[str, Rule]:
    """parameter name -> (group, lr multiplier, weight-decay multiplier) for `cfg.param_groups`."""
    inner = unwrap_model(model)
    if cfg.param_groups == "default":
        return _default_rules(inner, cfg)
    target = "last" if cfg.param_groups == "tsm_fc_lr5" else "classifier"
    return tsm_fc_lr5_rules(inner, target=target)


def param_groups(model: nn.Module, cfg: OptimConfig,
                 new_parameters: set[str] | None = None) -> list[dict]:
    """The optimiser's parameter groups per `cfg.param_groups` (see `parameter_rules`).

    Each group carries `name`, `lr_mult`, `new` (for logging and the SDN warm-up), and its `lr`
    (`cfg.lr * lr_mult`) and `weight_decay` (`cfg.weight_decay * wd multiplier`). Groups come in
    the rule's order (default: backbone_and_heads, classifier; TSM: MMAction2's order); empty
    groups are left out; frozen parameters (`requires_grad=False`) are not optimised. With
    `new_layers_warmup_epochs` > 0, each group is split in two: the parameters named in
    `new_parameters` (those the pretrained checkpoint did not provide; None: no checkpoint, so
    all), prefixed `new_`, after the others.

    Raises:
        ValueError: a classifier name that is not a parameter of the model; see also
            `tsm_fc_lr5_rules`.
    """
    inner = unwrap_model(model)
    rules = parameter_rules(inner, cfg)
    named = dict(inner.named_parameters())
    phased = cfg.new_layers_warmup_epochs > 0
    new = set(named) if new_parameters is None else set(new_parameters)
    order = ["backbone_and_heads", "classifier"] if cfg.param_groups == "default" else \
        list(TSM_GROUPS)
    groups = []
    for is_new in ((False, True) if phased else (False,)):
        for group in order:
            members = [n for n, p in named.items() if n in rules and rules[n][0] == group and
                       p.requires_grad and (not phased or (n in new) == is_new)]
            if not members:
                continue
            _, lr_mult, wd_mult = rules[members[0]]
            groups.append({"name": f"new_{group}" if is_new else group, "lr_mult": lr_mult,
                           "new": is_new, "lr": cfg.lr * lr_mult,
                           "weight_decay": cfg.weight_decay * wd_mult,
                           "params": [named[n] for n in members]})
    return groups


def build_optimizer(model: nn.Module, cfg: OptimConfig,
                    new_parameters: set[str] | None = None) -> torch.optim.Optimizer:
    """SGD (momentum, dampening, optional Nesterov) or AdamW over `param_groups(...)`."""
    groups = param_groups(model, cfg, new_parameters)
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, dampening=cfg.dampening,
                               nesterov=cfg.nesterov, weight_decay=cfg.weight_decay)
    return torch.optim.AdamW(groups, lr=cfg.lr, weight_decay=cfg.weight_decay)


@dataclass
class LrFactor:
    """The lr multiplier after `step` scheduler steps (batches): a picklable `LambdaLR` lambda.

    Attributes:
        iters_per_epoch: training batches per epoch (per worker).
        per_iteration: True: the schedule uses fractional epochs; False: it changes at epoch
            boundaries.
        warmup_per_iteration: the same for the warm-up (None: as `per_iteration`).
    """

    schedule: str
    epochs: int
    iters_per_epoch: int
    per_iteration: bool
    milestones: tuple[int, ...] = ()
    gamma: float = 0.1
    min_ratio: float = 0.0
    warmup_epochs: float = 0.0
    warmup_start: float = 0.1
    hold_steps: int = 0  # SDN's new-layers warm-up: the first hold_steps steps use hold_factor
    hold_factor: float = 1.0
    warmup_per_iteration: bool | None = None

    def __call__(self, step: int) -> float:
        if step < self.hold_steps:
            return self.hold_factor
        exact = step / self.iters_per_epoch
        t = exact if self.per_iteration else float(math.floor(exact))
        warm_exact = self.per_iteration if self.warmup_per_iteration is None else \
            self.warmup_per_iteration
        return lr_factor(t, schedule=self.schedule, epochs=self.epochs,
                         milestones=self.milestones, gamma=self.gamma, min_ratio=self.min_ratio,
                         warmup_epochs=self.warmup_epochs, warmup_start=self.warmup_start,
                         warmup_t=exact if warm_exact else float(math.floor(exact)))


def lr_factor(t: float, *, schedule: str, epochs: int, milestones=(), gamma: float = 0.1,
              min_ratio: float = 0.0, warmup_epochs: float = 0.0,
              warmup_start: float = 0.1, warmup_t: float | None = None) -> float:
    """The lr multiplier at fractional epoch `t` (0-based); see the module docstring.

    Args:
        min_ratio: cosine's floor, `min_lr / lr`.
        warmup_t: the warm-up's position in epochs (default `t`): mmcv warms up per iteration
            while its epoch-wise schedule holds `t` at the epoch's start.
    """
    if schedule == "step":
        factor = gamma ** sum(t >= m for m in milestones)
    elif schedule == "cosine":
        factor = min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * min(t, epochs)
                                                                        / epochs))
    else:
        raise ValueError(f"unknown schedule {schedule!r}; expected 'step' or 'cosine'")
    tw = t if warmup_t is None else warmup_t
    if warmup_epochs > 0 and tw < warmup_epochs:
        factor *= 1.0 - (1.0 - tw / warmup_epochs) * (1.0 - warmup_start)
    return factor


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: OptimConfig,
                    iters_per_epoch: int) -> torch.optim.lr_scheduler.LambdaLR:
    """A `LambdaLR` stepped once per training batch (see `LrFactor`).

    Raises:
        ValueError: `iters_per_epoch` < 1 (an empty training loader).
    """
    if iters_per_epoch < 1:
        raise ValueError(f"iters_per_epoch must be >= 1, got {iters_per_epoch} (is the training "
                         "list empty, or smaller than the batch size with drop_last?)")
    common = dict(schedule=cfg.schedule, epochs=cfg.epochs, iters_per_epoch=iters_per_epoch,
                  per_iteration=cfg.step_per == "iteration", milestones=tuple(cfg.milestones),
                  gamma=cfg.gamma, min_ratio=cfg.min_lr / cfg.lr,
                  warmup_epochs=cfg.warmup_epochs, warmup_start=cfg.warmup_start,
                  warmup_per_iteration=(None if cfg.warmup_per is None else
                                        cfg.warmup_per == "iteration"))
    if cfg.new_layers_warmup_epochs == 0:
        return torch.optim.lr_scheduler.LambdaLR(optimizer, LrFactor(**common))
    hold = cfg.new_layers_warmup_epochs * iters_per_epoch
    new_lr = cfg.new_layer_lr or cfg.lr
    factors = [LrFactor(**common, hold_steps=hold,
                        hold_factor=new_lr / group["lr"] if group.get("new") else 0.0)
               for group in optimizer.param_groups]
    return torch.optim.lr_scheduler.LambdaLR(optimizer, factors)
