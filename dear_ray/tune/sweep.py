"""Sweep YAML -> validated trial plans -> a Ray Tune run of the training driver.

A sweep file:

    name: demo                        # default: the file's stem
    base: ../configs/tiny.yaml        # a config file (relative to this file) or an inline mapping
    grid:                             # axes by dotted config path; the product of all axes
      model.head: [softmax, edl, dear]
      seed: [0, 1]
    cases:                            # optional coupled overrides, crossed with the grid
      - {name: i3d, model.backbone: i3d_tiny, optim.lr: 1.0e-3}
      - {name: tsm, model.backbone: tsm_tiny, optim.lr: 2.0e-3}
    search:                           # optional Tune search space (sampled num_samples times)
      optim.lr: {type: loguniform, low: 1.0e-4, high: 1.0e-2}
    num_samples: 1
    optimize:                         # optional: Optuna towards several objectives, instead
      algorithm: optuna               # of a scheduler (`dear_ray.tune.optimize`)
      objectives: {closed_top1: max, auroc: max}
    scheduler: {type: asha, metric: val_top1, mode: max, grace_period: 1}
    max_concurrent_trials: 1          # default: as many as fit in the local CPUs
    trial_resources: {CPU: 0.5}       # the Tune driver function of each trial (never 0 CPU);
                                      # resources.num_workers: 0 runs the loop in it (no
                                      # worker group), which adds a worker's share
    max_failures: 0                   # Tune retries of a failed trial
    ray: {num_cpus: 2, address: null} # local cluster size, or a cluster to join

Instead of `grid` and `cases`, a sweep may list `stages` (`dear_ray.tune._stages`): grids run one
after the other, a later stage's trials starting from an earlier stage's trial's last checkpoint
(`model.pretrained: {from: <stage>/<trial>}`), as pretraining and fine-tuning; docs/sweeps.md.

Every trial's config is validated by `expand_trials` before anything starts; errors name the sweep
file, the axis and the value. Post-hoc methods (MC dropout, OpenMax) are evaluated from a softmax
trial's score stores by the aggregator, never as separate trials. This module only parses and
expands (no Ray); `dear_ray.tune.runner.run_sweep` runs a sweep.
"""

from __future__ import annotations

import itertools
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from dear_ray.config import ExperimentConfig, load_config
from dear_ray.tune._listing import (  # noqa: F401 - part of this module's interface
    auto_concurrency,
    format_trials,
    trial_resources_summary,
    tune_trial_resources,
)
from dear_ray.tune._sections import (
    SWEEP_KEYS,
    SchedulerSpec,
    SearchDim,
    SweepError,
    nonnegative_int,
    parse_cases,
    parse_grid,
    parse_ray_and_resources,
    parse_scheduler,
    parse_search,
    positive_int,
    slug,
)
from dear_ray.tune._stages import (
    SOURCE_FIELD,
    StageSpec,
    check_sources,
    is_source,
    parse_stages,
    pop_source,
    rebase_stage,
)
from dear_ray.tune.optimize import OptimizeSpec, check_optimize_sweep, parse_optimize


@dataclass(frozen=True)
class SweepSpec:
    """A parsed sweep file. `base` is the validated base config; `only` (when not empty) keeps
    just the trials of these names and the trials they start from (`restrict_sweep`, the CLI's
    `--trials`). `stages` (a sweep with stages: then `grid` and `cases` are empty) in run order."""

    name: str
    base: ExperimentConfig
    grid: dict[str, list[Any]]
    cases: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    search: dict[str, SearchDim] = field(default_factory=dict)
    num_samples: int = 1
    scheduler: SchedulerSpec | None = None
    max_concurrent_trials: int | None = None
    trial_resources: dict[str, float] = field(default_factory=lambda: {"CPU": 0.5})
    max_failures: int = 0
    ray_address: str | None = None
    ray_num_cpus: int | None = None
    path: Path | None = None
    only: tuple[str, ...] = ()
    stages: tuple[StageSpec, ...] = ()
    optimize: OptimizeSpec | None = None

    @property
    def source(self) -> str:
        return str(self.path) if self.path else f"sweep {self.name!r}"

    @property
    def sweep_dir(self) -> Path:
        """`<run_dir>/<name>`: Tune state, score stores and the report of this sweep."""
        return self.base.override({"name": self.name}).run_root()

    @property
    def experiment(self) -> str:
        """The sweep's MLflow experiment: `tracking.experiment`, else the sweep's name."""
        return self.base.override({"name": self.name}).experiment_name()


@dataclass(frozen=True)
class TrialPlan:
    """One grid point: its name, the overrides it applies to the base, and the validated config.

    In a sweep with stages, `stage` names its stage and `source` the `<stage>/<trial>` whose last
    checkpoint starts it (`config.model.pretrained` is then unset until that stage starts)."""

    name: str
    overrides: dict[str, Any]
    config: ExperimentConfig
    stage: str = ""
    source: str | None = None


# --------------------------------------------------------------------------------------------
# Parsing


def load_sweep(path: str | os.PathLike) -> SweepSpec:
    """Read and validate a sweep YAML file (every trial's config included).

    Raises:
        SweepError: naming the file, the key or axis, and the bad value.
    """
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except OSError as err:
        raise SweepError(f"{path}: cannot read the sweep file: {err}") from err
    except yaml.YAMLError as err:
        raise SweepError(f"{path}: not valid YAML: {err}") from err
    spec = parse_sweep(raw, path=path)
    expand_trials(spec)  # validates every trial now, before anything starts
    return spec


def parse_sweep(raw: Any, *, path: Path | None = None, name: str | None = None) -> SweepSpec:
    """Build a `SweepSpec` from the mapping of a sweep file (`path` resolves a `base:` file)."""
    src = str(path) if path else "sweep"
    if not isinstance(raw, Mapping):
        raise SweepError(f"{src}: expected a mapping at the top level, got {type(raw).__name__}")
    unknown = sorted(set(raw) - SWEEP_KEYS)
    if unknown:
        raise SweepError(f"{src}: unknown key(s) {unknown}; allowed: {sorted(SWEEP_KEYS)}")

    sweep_name = str(raw.get("name") or name or (path.stem if path else "sweep"))
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", sweep_name):
        raise SweepError(f"{src}: name {sweep_name!r} must be letters, digits, '_', '.', '-'")
    base = _load_base(raw.get("base"), src, path)
    stages: tuple[StageSpec, ...] = ()
    if raw.get("stages") is not None:
        inside = sorted({"grid", "cases", "search"} & set(raw))
        if inside or raw.get("num_samples", 1) != 1:
            raise SweepError(f"{src}: stages: {inside or ['num_samples']} cannot sit beside "
                             "stages: grid and cases go inside each stage; search and "
                             "num_samples are not supported with stages")
        stages = parse_stages(raw["stages"], src, base)
    grid = parse_grid(raw.get("grid"), src, has_cases=bool(raw.get("cases")) or bool(stages))
    cases = parse_cases(raw.get("cases"), src, grid)
    search = parse_search(raw.get("search"), src, grid)
    ray_section, resources = parse_ray_and_resources(raw, src)
    return SweepSpec(
        name=sweep_name,
        base=base,
        grid=grid,
        cases=cases,
        search=search,
        num_samples=positive_int(raw.get("num_samples", 1), src, "num_samples"),
        scheduler=parse_scheduler(raw.get("scheduler"), src),
        max_concurrent_trials=(None if raw.get("max_concurrent_trials") is None else
                               positive_int(raw["max_concurrent_trials"], src,
                                             "max_concurrent_trials")),
        trial_resources={str(k): float(v) for k, v in resources.items()},
        max_failures=nonnegative_int(raw.get("max_failures", 0), src, "max_failures"),
        ray_address=ray_section.get("address"),
        ray_num_cpus=(None if ray_section.get("num_cpus") is None else
                      positive_int(ray_section["num_cpus"], src, "ray.num_cpus")),
        path=path.resolve() if path else None,
        stages=stages,
        optimize=parse_optimize(raw.get("optimize"), src),
    )


def _load_base(base: Any, src: str, path: Path | None) -> ExperimentConfig:
    if base is None:
        base = {}
    if isinstance(base, str):
        base_path = Path(base).expanduser()
        if not base_path.is_absolute() and path is not None:
            base_path = path.parent / base_path
        if not base_path.is_file():
            raise SweepError(f"{src}: base: config file {base_path} does not exist")
        base = base_path
    elif not isinstance(base, Mapping):
        raise SweepError(f"{src}: base: expected a config mapping or a path to a config file, "
                         f"got {base!r}")
    try:
        return load_config(base)
    except (ValueError, TypeError, KeyError, FileNotFoundError) as err:
        raise SweepError(f"{src}: base config: {err}") from err


# --------------------------------------------------------------------------------------------
# Expansion


def expand_trials(spec: SweepSpec) -> list[TrialPlan]:
    """Every grid point (cases x grid axes, in file order) with its validated config; in a sweep
    with stages, every stage's in run order.

    Each trial's config is the base (a stage's: the sweep's base with the stage's overrides) with
    `name` set to the sweep name, then the case's overrides, then the grid values. Search axes are
    validated at their bounds (every choice). A `{from: <stage>/<trial>}` value of
    `model.pretrained` becomes the plan's `source`.

    Raises:
        SweepError: naming the sweep file, the axis and the value that fails validation; a trial
            name used in two stages; a `from` that names no trial of an earlier stage.
    """
    if not spec.stages:
        plans = _expand_stage(spec, spec.base, spec.grid, spec.cases, stage="", where="")
    else:
        plans = []
        for i, stage in enumerate(spec.stages):
            where = f"stages[{i}] ({stage.name}), "
            stage_plans = _expand_stage(spec, stage.base, stage.grid, stage.cases,
                                        stage=stage.name, where=where, source=stage.source)
            taken = {p.name: p.stage for p in plans}
            for plan in stage_plans:
                if plan.name in taken:
                    raise SweepError(f"{spec.source}: {where}trial {plan.name!r}: the name is also "
                                     f"a trial of stage {taken[plan.name]!r}; trial names must be "
                                     "unique across stages (they name the run folders)")
            plans += stage_plans
        index = {s.name: i for i, s in enumerate(spec.stages)}
        check_sources(spec.stages, {s.name: [p.name for p in plans if p.stage == s.name]
                                    for s in spec.stages},
                      {p.name: (index[p.stage], p.source) for p in plans if p.source},
                      spec.source)
    if spec.only:
        missing = sorted(set(spec.only) - {p.name for p in plans})
        if missing:
            raise SweepError(f"{spec.source}: no trial named {missing}; the trials are "
                             f"{[p.name for p in plans]}")
        keep = set(spec.only)
        for plan in reversed(plans):  # and the trials they start from, stage by stage
            if plan.name in keep and plan.source:
                keep.add(plan.source.split("/")[1])
        plans = [p for p in plans if p.name in keep]
    if spec.optimize is not None:
        check_optimize_sweep(spec, plans)
    return plans


def _expand_stage(spec: SweepSpec, base: ExperimentConfig, grid: dict[str, list[Any]],
                  cases: list[tuple[str, dict[str, Any]]], *, stage: str, where: str,
                  source: str | None = None) -> list[TrialPlan]:
    """The trials of one grid (a sweep's, or a stage's with `where` naming the stage)."""
    base = _override(spec, base, {"name": spec.name}, f"{where}name", spec.name)
    # each value alone first, so an error points at one axis and one value
    for axis, values in grid.items():
        for value in values:
            if not is_source(value):
                _override(spec, base, {axis: value}, f"{where}grid axis {axis!r}", value)
    for axis, dim in spec.search.items():
        for value in dim.probe_values():
            _override(spec, base, {axis: value}, f"search axis {axis!r}", value)
    for case_name, overrides in cases:
        rest, _ = pop_source(overrides, f"{spec.source}: {where}case {case_name!r}")
        _override(spec, base, rest, f"{where}case {case_name!r}", overrides)

    axes = list(grid)
    plans, used = [], set()
    for (case_name, case_overrides), values in itertools.product(
            cases or [("", {})], itertools.product(*(grid[a] for a in axes))):
        overrides = {**case_overrides, **dict(zip(axes, values, strict=True))}
        parts = ([case_name] if case_name else []) + [
            f"{_short_axis(a, axes)}-{v}" for a, v in zip(axes, values, strict=True)]
        name = slug("_".join(parts)) or "trial"
        if name in used:
            name = f"{name}_{len(plans)}"
        used.add(name)
        own_path = not is_source(overrides.get(SOURCE_FIELD, {"from": None}))
        overrides, own = pop_source(overrides, f"{spec.source}: {where}trial {name!r}")
        own = own or (None if own_path else source)  # a trial's own path wins over its stage's
        if own and not stage:
            raise SweepError(f"{spec.source}: trial {name!r}: model.pretrained: {{from: ...}} "
                             "names a trial of an earlier stage: it needs a sweep with stages")
        config = _override(spec, base, overrides, f"{where}trial {name!r}", overrides)
        fields = {_short_axis(a, axes): v for a, v in zip(axes, values, strict=True)}
        plans.append(TrialPlan(name=name, overrides=overrides, config=config, stage=stage,
                               source=_fill(own, fields, f"{where}trial {name!r}", spec)))
    return plans


def restrict_sweep(spec: SweepSpec, *, overrides: Mapping[str, Any] | None = None,
                   trials: list[str] | None = None) -> SweepSpec:
    """The sweep with `overrides` applied to its base config and only the named `trials`.

    What `dear-ray sweep FILE --set data.data_root=/mnt/data --trials softmax,edl` runs: paths
    for another machine, a shorter schedule, a subset of the grid. Case and grid values are
    applied after the base, so they still win over `overrides` on the same field.

    Raises:
        SweepError: an override fails validation, or a trial name is not in the sweep.
    """
    base = spec.base
    if overrides:
        try:
            base = base.override(dict(overrides))
        except (ValueError, TypeError, KeyError) as err:
            raise SweepError(f"{spec.source}: --set {dict(overrides)!r}: {err}") from err
    stages = tuple(rebase_stage(s, base, spec.source, i) for i, s in enumerate(spec.stages))
    restricted = replace(spec, base=base, only=tuple(trials or ()) or spec.only, stages=stages)
    expand_trials(restricted)  # validates the overrides against every trial, and the names
    return restricted


def ineffective_overrides(spec: SweepSpec, overrides: Mapping[str, Any]) -> list[str]:
    """The `--set` fields that some or all trials do not keep: a case or grid point sets them
    itself (e.g. `--set data.data_root=/mnt/data` beside a case with its own data root).

    Returns one warning line per such field, naming the trials and the values they use instead.
    """
    if not overrides:
        return []
    plans = expand_trials(spec)
    probe = load_config(spec.base.to_dict(sparse=True), overrides=dict(overrides)).to_dict()
    lines = []
    for dotted in overrides:
        def leaf(d: dict) -> Any:
            for part in dotted.split("."):
                d = d.get(part) if isinstance(d, dict) else None
            return d

        wanted = leaf(probe)
        others = {p.name: leaf(p.config.to_dict()) for p in plans}
        others = {name: value for name, value in others.items() if value != wanted}
        if not plans or not others:
            continue
        if len(others) == len(plans):
            shown = sorted({repr(u) for u in others.values()})
            lines.append(f"--set {dotted}={wanted!r} has no effect: every trial sets {dotted} "
                         f"itself ({', '.join(shown[:5])}{', ...' if len(shown) > 5 else ''})")
            continue
        named = [f"{name} ({value!r})" for name, value in others.items()]
        lines.append(f"--set {dotted}={wanted!r} does not reach {len(others)} of {len(plans)} "
                     f"trial(s), which set {dotted} themselves: {', '.join(named[:5])}"
                     f"{', ...' if len(named) > 5 else ''}")
    return lines


def _override(spec: SweepSpec, cfg: ExperimentConfig, overrides: dict, where: str,
              value: Any) -> ExperimentConfig:
    try:
        return cfg.override(overrides)
    except (ValueError, TypeError, KeyError) as err:
        raise SweepError(f"{spec.source}: {where}, value {value!r}: {err}") from err


def _fill(source: str | None, fields: dict[str, Any], where: str, spec: SweepSpec) -> str | None:
    """A `from` with `{axis}` fields (e.g. `pretrain/pretrain_seed-{seed}`) filled with the
    trial's values of its stage's grid axes (by the names its trial names use)."""
    if source is None or "{" not in source:
        return source
    try:
        return source.format_map(fields)
    except (KeyError, ValueError, IndexError) as err:
        raise SweepError(f"{spec.source}: {where}: model.pretrained.from {source!r}: {{...}} takes "
                         f"a grid axis of the stage ({sorted(fields) or 'none'}), got {err}"
                         ) from err


def _short_axis(axis: str, axes: list[str]) -> str:
    leaf = axis.rsplit(".", 1)[-1]
    clash = sum(a.rsplit(".", 1)[-1] == leaf for a in axes) > 1
    return axis.replace(".", "-") if clash else leaf
