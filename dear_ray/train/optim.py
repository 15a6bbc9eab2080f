"""Optimiser and learning-rate schedule built from `OptimConfig` (SPEC section 3).

- Parameter groups: the classifier's parameters (named by `model.classifier_parameter_names()`, e.g.
  TSM's `cls_head.fc_cls.*`) get `lr * classifier_lr_mult`; every other trainable parameter gets `lr`.
- Schedules, as a factor of each group's base lr at fractional epoch t:
  `step`: gamma ** (number of milestones <= t); `cosine`: min_lr + (lr - min_lr)(1 + cos(pi t / E)) / 2
  over all E epochs (MMAction2's CosineAnnealing); a linear warm-up over the first `warmup_epochs`
  multiplies by `1 - (1 - t / warmup_epochs)(1 - warmup_start)` (MMAction2's linear warm-up).
- The scheduler is stepped once per training batch; with `step_per: epoch` the factor only changes
  at epoch boundaries (t is floored), with `step_per: iteration` it moves every batch.
- SDN's new-layers warm-up (`new_layers_warmup_epochs` > 0): the parameters `model.pretrained` did
  not provide form their own groups (`new` True); for the first warm-up epochs the other groups'
  factor is 0 (frozen) and the new groups run at `new_layer_lr`; then every group follows the
  schedule above.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from dear_ray.config import OptimConfig


def unwrap_model(model: nn.Module) -> nn.Module:
    """The module inside a DistributedDataParallel / DataParallel wrapper (or the model itself)."""
    return model.module if isinstance(model, (nn.parallel.DistributedDataParallel,
                                              nn.DataParallel)) else model


def param_groups(model: nn.Module, cfg: OptimConfig,
                 new_parameters: set[str] | None = None) -> list[dict]:
    """Two parameter groups: the rest at `lr`, the classifier at `lr * classifier_lr_mult`.

    Each group carries `name`, `lr_mult` and `new` for logging. Empty groups are left out; frozen
    parameters (`requires_grad=False`) are not optimised. With `new_layers_warmup_epochs` > 0,
    each group is split in two: the parameters named in `new_parameters` (those the pretrained
    checkpoint did not provide; None: no checkpoint, so all) and the others.

    Raises:
        ValueError: a classifier name that is not a parameter of the model.
    """
    inner = unwrap_model(model)
    classifier = set(inner.classifier_parameter_names())
    named = dict(inner.named_parameters())
    missing = sorted(classifier - set(named))
    if missing:
        raise ValueError(f"classifier_parameter_names() lists {missing}, which are not parameters "
                         f"of the model")
    phased = cfg.new_layers_warmup_epochs > 0
    new = set(named) if new_parameters is None else set(new_parameters)
    groups = []
    for is_new in ((False, True) if phased else (False,)):
        for name, mult, members in (("backbone_and_heads", 1.0, lambda n: n not in classifier),
                                    ("classifier", cfg.classifier_lr_mult, classifier.__contains__)):
            params = [p for n, p in named.items()
                      if members(n) and p.requires_grad and (not phased or (n in new) == is_new)]
            groups.append({"name": f"new_{name}" if is_new else name, "lr_mult": mult,
                           "new": is_new, "lr": cfg.lr * mult, "params": params})
    return [g for g in groups if g["params"]]


def build_optimizer(model: nn.Module, cfg: OptimConfig,
                    new_parameters: set[str] | None = None) -> torch.optim.Optimizer:
    """SGD (momentum, optional Nesterov) or AdamW over `param_groups(model, cfg, new_parameters)`."""
    groups = param_groups(model, cfg, new_parameters)
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov,
                               weight_decay=cfg.weight_decay)
    return torch.optim.AdamW(groups, lr=cfg.lr, weight_decay=cfg.weight_decay)


@dataclass
class LrFactor:
    """The lr multiplier after `step` scheduler steps (batches): a picklable `LambdaLR` lambda.

    Attributes:
        iters_per_epoch: training batches per epoch (per worker).
        per_iteration: True: fractional epochs; False: the factor changes at epoch boundaries.
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

    def __call__(self, step: int) -> float:
        if step < self.hold_steps:
            return self.hold_factor
        t = step / self.iters_per_epoch
        if not self.per_iteration:
            t = float(math.floor(t))
        return lr_factor(t, schedule=self.schedule, epochs=self.epochs,
                         milestones=self.milestones, gamma=self.gamma, min_ratio=self.min_ratio,
                         warmup_epochs=self.warmup_epochs, warmup_start=self.warmup_start)


def lr_factor(t: float, *, schedule: str, epochs: int, milestones=(), gamma: float = 0.1,
              min_ratio: float = 0.0, warmup_epochs: float = 0.0,
              warmup_start: float = 0.1) -> float:
    """The lr multiplier at fractional epoch `t` (0-based); see the module docstring.

    Args:
        min_ratio: cosine's floor, `min_lr / lr`.
    """
    if schedule == "step":
        factor = gamma ** sum(t >= m for m in milestones)
    elif schedule == "cosine":
        factor = min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * min(t, epochs)
                                                                        / epochs))
    else:
        raise ValueError(f"unknown schedule {schedule!r}; expected 'step' or 'cosine'")
    if warmup_epochs > 0 and t < warmup_epochs:
        factor *= 1.0 - (1.0 - t / warmup_epochs) * (1.0 - warmup_start)
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
                  warmup_epochs=cfg.warmup_epochs, warmup_start=cfg.warmup_start)
    if cfg.new_layers_warmup_epochs == 0:
        return torch.optim.lr_scheduler.LambdaLR(optimizer, LrFactor(**common))
    hold = cfg.new_layers_warmup_epochs * iters_per_epoch
    new_lr = cfg.new_layer_lr or cfg.lr
    factors = [LrFactor(**common, hold_steps=hold,
                        hold_factor=new_lr / group["lr"] if group.get("new") else 0.0)
               for group in optimizer.param_groups]
    return torch.optim.lr_scheduler.LambdaLR(optimizer, factors)
