"""Parsers of the sections of a sweep file (`dear_ray.tune.sweep`), errors naming file and key;
and the dry run's per-trial summary of the settings that decide fidelity (`fidelity_summary`)."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

SWEEP_KEYS = {"name", "base", "grid", "cases", "search", "num_samples", "scheduler",
              "max_concurrent_trials", "trial_resources", "max_failures", "ray", "stages", "optimize"}
_SEARCH_TYPES = {"uniform": ("low", "high"), "loguniform": ("low", "high"),
                 "randint": ("low", "high"), "choice": ("values",)}
_SCHEDULER_KEYS = {"type", "metric", "mode", "grace_period", "max_t", "reduction_factor"}
# Fields every trial of a sweep shares: the sweep owns its name and its run directory.
_RESERVED_PATHS = ("name", "tracking")


class SweepError(ValueError):
    """An invalid sweep file; the message names the file, the key or axis, and the value."""


@dataclass(frozen=True)
class SchedulerSpec:
    """Tune's ASHA scheduler (`ray.tune.schedulers.ASHAScheduler`), in training epochs."""

    metric: str
    mode: str
    grace_period: int = 1
    max_t: int | None = None
    reduction_factor: float = 2.0
    type: str = "asha"


@dataclass(frozen=True)
class SearchDim:
    """One sampled axis: `uniform`/`loguniform`/`randint` over [low, high], or `choice` of values."""

    type: str
    low: float | None = None
    high: float | None = None
    values: tuple[Any, ...] = ()

    def probe_values(self) -> list[Any]:
        """Values that must all validate: the bounds, or every choice."""
        return list(self.values) if self.type == "choice" else [self.low, self.high]

    def describe(self) -> str:
        if self.type == "choice":
            return f"choice{list(self.values)}"
        return f"{self.type}({self.low}, {self.high})"


def check_path(dotted: str, src: str, where: str) -> None:
    """A grid/case/search key must be a dotted path outside the fields the sweep owns."""
    if not isinstance(dotted, str) or not dotted:
        raise SweepError(f"{src}: {where}: expected dotted config paths as keys, got {dotted!r}")
    if dotted.split(".")[0] in _RESERVED_PATHS:
        raise SweepError(f"{src}: {where}: {dotted!r} cannot vary within a sweep (all trials share "
                         "the sweep's name and tracking settings); set it in the base config")


def parse_grid(grid: Any, src: str, *, has_cases: bool) -> dict[str, list[Any]]:
    if grid is None:
        grid = {}
    if not isinstance(grid, Mapping):
        raise SweepError(f"{src}: grid: expected a mapping of dotted paths to lists, got {grid!r}")
    if not grid and not has_cases:
        raise SweepError(f"{src}: grid: empty; give at least one axis (e.g. model.head: [softmax]) "
                         "or a list of cases")
    parsed = {}
    for axis, values in grid.items():
        check_path(axis, src, "grid")
        if not isinstance(values, list) or not values:
            raise SweepError(f"{src}: grid axis {axis!r}: expected a non-empty list of values, "
                             f"got {values!r}")
        if len({repr(v) for v in values}) != len(values):
            raise SweepError(f"{src}: grid axis {axis!r}: repeated values in {values!r}")
        parsed[axis] = list(values)
    return parsed


def parse_cases(cases: Any, src: str, grid: Mapping[str, Any]) -> list[tuple[str, dict]]:
    if cases is None:
        return []
    if not isinstance(cases, list) or not cases:
        raise SweepError(f"{src}: cases: expected a non-empty list of override mappings, "
                         f"got {cases!r}")
    parsed, names = [], set()
    for i, case in enumerate(cases):
        if not isinstance(case, Mapping) or not case:
            raise SweepError(f"{src}: cases[{i}]: expected a mapping of dotted overrides, "
                             f"got {case!r}")
        overrides = {k: v for k, v in case.items() if k != "name"}
        for key in overrides:
            check_path(key, src, f"cases[{i}]")
            if key in grid:
                raise SweepError(f"{src}: cases[{i}]: {key!r} is also a grid axis; "
                                 "set it in one place")
        case_name = str(case.get("name") or slug("_".join(
            f"{k.rsplit('.', 1)[-1]}-{v}" for k, v in overrides.items())))
        if case_name in names:
            raise SweepError(f"{src}: cases[{i}]: name {case_name!r} is used twice")
        names.add(case_name)
        parsed.append((case_name, overrides))
    return parsed


def parse_search(search: Any, src: str, grid: Mapping[str, Any]) -> dict[str, SearchDim]:
    if search is None:
        return {}
    if not isinstance(search, Mapping):
        raise SweepError(f"{src}: search: expected a mapping of dotted paths to distributions, "
                         f"got {search!r}")
    parsed = {}
    for axis, dim in search.items():
        check_path(axis, src, "search")
        if axis in grid:
            raise SweepError(f"{src}: search axis {axis!r} is also a grid axis")
        where = f"{src}: search axis {axis!r}"
        if not isinstance(dim, Mapping) or dim.get("type") not in _SEARCH_TYPES:
            raise SweepError(f"{where}: expected {{type: one of {sorted(_SEARCH_TYPES)}, ...}}, "
                             f"got {dim!r}")
        needed = _SEARCH_TYPES[dim["type"]]
        extra = set(dim) - {"type", *needed}
        if extra or any(k not in dim for k in needed):
            raise SweepError(f"{where}: type {dim['type']} takes exactly {list(needed)}, "
                             f"got {dict(dim)!r}")
        if dim["type"] == "choice":
            if not isinstance(dim["values"], list) or not dim["values"]:
                raise SweepError(f"{where}: values: expected a non-empty list, "
                                 f"got {dim['values']!r}")
            parsed[axis] = SearchDim("choice", values=tuple(dim["values"]))
            continue
        low, high = dim["low"], dim["high"]
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (low, high)) \
                or not low < high or (dim["type"] == "loguniform" and low <= 0):
            raise SweepError(f"{where}: expected numbers low < high (low > 0 for loguniform), "
                             f"got low={low!r} high={high!r}")
        parsed[axis] = SearchDim(dim["type"], low=low, high=high)
    return parsed


def parse_ray_and_resources(raw: Mapping, src: str) -> tuple[Mapping, Mapping]:
    """The `ray` section and `trial_resources` of a sweep file."""
    ray_section = raw.get("ray") or {}
    if not isinstance(ray_section, Mapping) or set(ray_section) - {"address", "num_cpus"}:
        raise SweepError(f"{src}: ray: expected a mapping with keys address, num_cpus; "
                         f"got {ray_section!r}")
    resources = raw.get("trial_resources", {"CPU": 0.5})
    if not isinstance(resources, Mapping) or not resources or \
            not all(isinstance(v, (int, float)) and v >= 0 for v in resources.values()):
        raise SweepError(f"{src}: trial_resources: expected a mapping like {{CPU: 0.5}}, "
                         f"got {resources!r}")
    if not float(resources.get("CPU", 0)) > 0:
        raise SweepError(f"{src}: trial_resources.CPU must be > 0 (Ray rejects a 0-CPU driver); "
                         f"a fraction such as 0.5 keeps trials from deadlocking, got {resources!r}")
    return ray_section, resources


def parse_scheduler(raw: Any, src: str) -> SchedulerSpec | None:
    if raw is None:
        return None
    if not isinstance(raw, Mapping) or raw.get("type", "asha") != "asha":
        raise SweepError(f"{src}: scheduler: only {{type: asha, metric, mode, ...}} is supported, "
                         f"got {raw!r}")
    unknown = set(raw) - _SCHEDULER_KEYS
    if unknown:
        raise SweepError(f"{src}: scheduler: unknown key(s) {sorted(unknown)}; "
                         f"allowed: {sorted(_SCHEDULER_KEYS)}")
    if not raw.get("metric") or raw.get("mode") not in ("min", "max"):
        raise SweepError(f"{src}: scheduler: needs metric (a name the training loop reports) and "
                         f"mode (min or max), got {dict(raw)!r}")
    return SchedulerSpec(
        metric=str(raw["metric"]), mode=raw["mode"],
        grace_period=positive_int(raw.get("grace_period", 1), src, "scheduler.grace_period"),
        max_t=(None if raw.get("max_t") is None else
               positive_int(raw["max_t"], src, "scheduler.max_t")),
        reduction_factor=float(raw.get("reduction_factor", 2.0)),
    )


def positive_int(value: Any, src: str, key: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise SweepError(f"{src}: {key}: expected a positive integer, got {value!r}")
    return value


def nonnegative_int(value: Any, src: str, key: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise SweepError(f"{src}: {key}: expected an integer >= 0, got {value!r}")
    return value


def slug(text: str) -> str:
    return re.sub(r"-{2,}", "-", re.sub(r"[^A-Za-z0-9_.=-]+", "-", text)).strip("-")


# --------------------------------------------------------------------------------------------
# The dry run's per-trial summary of the settings that decide fidelity to the released code

_NORMS = {  # (mean, std) on 0-255 RGB -> the name shown
    ((123.675, 116.28, 103.53), (58.395, 57.12, 57.375)): "mmaction2",
    ((114.7748, 107.7354, 99.475), (1.0, 1.0, 1.0)): "sdn_activitynet",
}


def fidelity_summary(cfg: Any) -> str:
    """`key=value` pairs of one trial's settings that decide fidelity to the released code, one
    per entry of `FIDELITY_FIELDS` that applies to the trial. `cfg` is an `ExperimentConfig`."""
    shown = ((key, value(cfg)) for key, value in FIDELITY_FIELDS)
    return " ".join(f"{key}={text}" for key, text in shown if text is not None)


def _groups_summary(cfg: Any) -> str:
    o = cfg.optim
    if o.param_groups == "default":
        return "default" + (f"(classifier_x{o.classifier_lr_mult:g})"
                            if o.classifier_lr_mult != 1 else "")
    import torch

    from dear_ray.models import build_recognizer
    from dear_ray.train.optim import tsm_fc_lr5_rules

    m = cfg.model
    with torch.device("meta"):  # structure only: no memory, no initialisation cost
        model = build_recognizer(num_classes=2, **m.recognizer_options())
    target = "last" if o.param_groups == "tsm_fc_lr5" else "classifier"
    promoted = sorted({n.rsplit(".", 1)[0] for n, (g, _, _) in
                       tsm_fc_lr5_rules(model, target=target).items()
                       if g in ("lr5_weight", "lr10_bias")})
    return f"{o.param_groups}(5x/10x:{','.join(promoted)})"


def _schedule_summary(cfg: Any) -> str:
    o = cfg.optim
    sched = f"{o.schedule}{list(o.milestones) if o.schedule == 'step' else ''}/{o.step_per}"
    if o.warmup_epochs:
        sched += f"+warmup{o.warmup_epochs:g}/{o.warmup_per or o.step_per}"
    return sched.replace(" ", "")


def _norm_summary(cfg: Any) -> str:
    d = cfg.data
    return _NORMS.get((d.mean, d.std), f"mean{list(d.mean)}/std{list(d.std)}")


def _shortcut_summary(cfg: Any) -> str | None:
    """Type-A 3D-ResNets: `A/detached` (SDN's released gradient) or `A`; None for others."""
    from dear_ray.models.backbones.r3d18 import shortcut_setting

    return shortcut_setting(cfg.model.backbone, cfg.model.backbone_options)


def _views_summary(cfg: Any) -> str:
    setting = cfg.eval.average_clips
    if setting != "released":
        return setting
    from dear_ray.train.evaluation import average_clips_for

    per_split = {s: average_clips_for(cfg.model.head, s, setting, backbone=cfg.model.backbone)
                 for s in cfg.eval_splits()}
    if len(set(per_split.values())) == 1:
        return f"released->{next(iter(per_split.values()))}"
    return "released->" + ",".join(f"{s}:{v}" for s, v in per_split.items())


def _precision_summary(cfg: Any) -> str:
    """What runs: training under bf16 autocast only with `resources.amp` on GPU workers; the score
    stores under it only with `eval.precision: amp` as well (an eval_only trial shows eval only:
    it uses the same autocast, `resources.amp` on a GPU, for its stores)."""
    train = "bf16" if cfg.resources.amp and cfg.resources.use_gpu else "fp32"
    stores = "bf16" if train == "bf16" and cfg.eval.precision == "amp" else "fp32"
    return f"eval:{stores}" if cfg.eval_only else f"train:{train},eval:{stores}"


def _mask_step_summary(cfg: Any) -> str | None:
    """sdn trials with human detections (the masked clips): `separate` (SDN's second SGD step;
    `+scene_bn` when the scene MLP's BatchNorm statistics move on its masked batch,
    `head_options.mask_step_scene_bn`) or `joint`."""
    if cfg.model.head != "sdn" or cfg.data.detections is None:
        return None
    if cfg.optim.sdn_mask_step != "separate":
        return cfg.optim.sdn_mask_step
    import inspect

    from dear_ray.models.heads.sdn import create_sdn_head

    default = inspect.signature(create_sdn_head).parameters["mask_step_scene_bn"].default
    moves = cfg.model.head_options.get("mask_step_scene_bn", default)
    return "separate+scene_bn" if moves else "separate"


def _new_layers_warmup_summary(cfg: Any) -> str | None:
    epochs = cfg.optim.new_layers_warmup_epochs
    return f"{epochs}ep" if epochs else None


def _training(show: Callable[[Any], str | None]) -> Callable[[Any], str | None]:
    """A field that only training reads: left out of an `eval_only` trial's line."""
    return lambda cfg: None if cfg.eval_only else show(cfg)


# The dry run's fidelity fields, in the order shown: the key, and a function of the trial's
# `ExperimentConfig` giving the text after `key=` (None: the field does not apply to the trial).
# A new setting is one more line here.
FIDELITY_FIELDS: list[tuple[str, Callable[[Any], str | None]]] = [
    ("dropout", lambda cfg: f"{cfg.model.dropout:g}"),
    ("nesterov", _training(lambda cfg: str(cfg.optim.nesterov))),
    ("dampening", _training(lambda cfg: f"{cfg.optim.dampening:g}")),
    ("groups", _training(_groups_summary)),
    ("lr", _training(_schedule_summary)),
    ("norm", _norm_summary),
    ("flip", _training(lambda cfg: str(cfg.data.flip))),
    ("resize", lambda cfg: cfg.data.resize),
    ("shortcut", _training(_shortcut_summary)),
    ("views", _views_summary),
    ("precision", _precision_summary),
    ("mask_step", _training(_mask_step_summary)),
    ("new_layers_warmup", _training(_new_layers_warmup_summary)),
    ("test_rounding", lambda cfg: cfg.data.test_rounding),
    ("threshold_print", lambda cfg: cfg.eval.threshold_print),
    ("subset_draws", lambda cfg: cfg.eval.subset_draws),
    ("mit_known_rows", lambda cfg: str(cfg.eval.mit_known_rows) if cfg.eval.protocol == "psl" else None),
]
