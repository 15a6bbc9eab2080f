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
    scheduler: {type: asha, metric: val_top1, mode: max, grace_period: 1}
    max_concurrent_trials: 1          # default: as many as fit in the local CPUs
    trial_resources: {CPU: 0.5}       # the Tune driver function of each trial (never 0 CPU);
                                      # resources.num_workers: 0 runs the loop in it (no
                                      # worker group), which adds a worker's share
    max_failures: 0                   # Tune retries of a failed trial
    ray: {num_cpus: 2, address: null} # local cluster size, or a cluster to join

Every trial's config is validated by `expand_trials` before anything starts; errors name the sweep
file, the axis and the value. Post-hoc methods (MC dropout, OpenMax) are evaluated from a softmax
trial's score stores by the aggregator, never as separate trials.
"""

from __future__ import annotations

import itertools
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from dear_ray.config import ExperimentConfig, load_config
from dear_ray.models.cost import cost_summary
from dear_ray.scores import methods_for_head
from dear_ray.tune._sections import (
    SWEEP_KEYS,
    SchedulerSpec,
    SearchDim,
    SweepError,
    fidelity_summary,
    nonnegative_int,
    parse_cases,
    parse_grid,
    parse_scheduler,
    parse_search,
    positive_int,
    slug,
)


@dataclass(frozen=True)
class SweepSpec:
    """A parsed sweep file. `base` is the validated base config; `only` (when not empty) keeps
    just the trials of these names (`restrict_sweep`, the CLI's `--trials`)."""

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
    """One grid point: its name, the overrides it applies to the base, and the validated config."""

    name: str
    overrides: dict[str, Any]
    config: ExperimentConfig


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
    grid = parse_grid(raw.get("grid"), src, has_cases=bool(raw.get("cases")))
    cases = parse_cases(raw.get("cases"), src, grid)
    search = parse_search(raw.get("search"), src, grid)
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
    """Every grid point (cases x grid axes, in file order) with its validated config.

    Each trial's config is the base with `name` set to the sweep name, then the case's overrides,
    then the grid values. Search axes are validated at their bounds (every choice).

    Raises:
        SweepError: naming the sweep file, the axis and the value that fails validation.
    """
    base = _override(spec, spec.base, {"name": spec.name}, "name", spec.name)
    # each value alone first, so an error points at one axis and one value
    for axis, values in spec.grid.items():
        for value in values:
            _override(spec, base, {axis: value}, f"grid axis {axis!r}", value)
    for axis, dim in spec.search.items():
        for value in dim.probe_values():
            _override(spec, base, {axis: value}, f"search axis {axis!r}", value)
    for case_name, overrides in spec.cases:
        _override(spec, base, overrides, f"case {case_name!r}", overrides)

    cases = spec.cases or [("", {})]
    axes = list(spec.grid)
    plans, used = [], set()
    for (case_name, case_overrides), values in itertools.product(
            cases, itertools.product(*(spec.grid[a] for a in axes))):
        overrides = {**case_overrides, **dict(zip(axes, values, strict=True))}
        parts = ([case_name] if case_name else []) + [
            f"{_short_axis(a, axes)}-{v}" for a, v in zip(axes, values, strict=True)]
        name = slug("_".join(parts)) or "trial"
        if name in used:
            name = f"{name}_{len(plans)}"
        used.add(name)
        config = _override(spec, base, overrides, f"trial {name!r}", overrides)
        plans.append(TrialPlan(name=name, overrides=overrides, config=config))
    if spec.only:
        missing = sorted(set(spec.only) - {p.name for p in plans})
        if missing:
            raise SweepError(f"{spec.source}: no trial named {missing}; the trials are "
                             f"{[p.name for p in plans]}")
        plans = [p for p in plans if p.name in spec.only]
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
    restricted = replace(spec, base=base, only=tuple(trials or ()) or spec.only)
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
    probe = load_config(spec.base.to_dict(), overrides=dict(overrides)).to_dict()
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


def _short_axis(axis: str, axes: list[str]) -> str:
    leaf = axis.rsplit(".", 1)[-1]
    clash = sum(a.rsplit(".", 1)[-1] == leaf for a in axes) > 1
    return axis.replace(".", "-") if clash else leaf


def trial_resources_summary(cfg: ExperimentConfig) -> tuple[int, float, float]:
    """(workers, CPUs, GPUs) one trial's Ray Train workers reserve; with `num_workers: 0` the
    loop runs in the trial's own process (no worker group), which then holds one
    worker's `cpus_per_worker` (and `gpus_per_worker`) on top of the trial driver's share."""
    res = cfg.resources
    gpus = float(res.gpus_per_worker) if res.use_gpu else 0.0
    slots = max(res.num_workers, 1)
    return res.num_workers, slots * float(res.cpus_per_worker), slots * gpus


def tune_trial_resources(spec: SweepSpec, cfg: ExperimentConfig) -> dict[str, float]:
    """What Tune reserves for one trial's own process: `trial_resources`, plus the loop's CPUs
    and GPUs when the loop runs in it (`resources.num_workers: 0`, `trial_resources_summary`);
    the workers of a worker-group trial reserve theirs themselves."""
    out = dict(spec.trial_resources)
    workers, cpus, gpus = trial_resources_summary(cfg)
    if workers == 0:
        out["CPU"] = out.get("CPU", 0.0) + cpus
        if gpus:
            out["GPU"] = out.get("GPU", 0.0) + gpus
    return out


def format_trials(trials: list[TrialPlan], spec: SweepSpec | None = None) -> str:
    """The `dear-ray sweep --dry-run` listing: one line per trial (its resources, the methods its
    model is reported as, its overrides, then after ` | ` the resolved fidelity settings of
    `fidelity_summary`, one `key=value` per entry of `_sections.FIDELITY_FIELDS` that applies),
    and after another ` | ` the model's parameters, trainable parameters and GFLOPs of one clip
    (`dear_ray.models.cost.cost_summary`), then the totals."""
    width = max((len(t.name) for t in trials), default=5)
    methods = [",".join(methods_for_head(t.config.model.head,
                                         stochastic_passes=t.config.eval.stochastic_passes))
               for t in trials]
    mwidth = max((len(m) for m in methods), default=7)
    overrides = [", ".join(f"{k}={v}" for k, v in t.overrides.items()) or "(base)" for t in trials]
    owidth = max((len(o) for o in overrides), default=9)
    lines = [f"{'trial':<{width}}  workers  CPUs  GPUs  {'methods':<{mwidth}}  "
             f"{'overrides':<{owidth}} | fidelity | cost"]
    for t, method, over in zip(trials, methods, overrides, strict=True):
        workers, cpus, gpus = trial_resources_summary(t.config)
        lines.append(f"{t.name:<{width}}  {workers:>7}  {cpus:>4g}  {gpus:>4g}  {method:<{mwidth}}  "
                     f"{over:<{owidth}} | {fidelity_summary(t.config)} | {cost_summary(t.config)}")
    if spec is not None:
        samples = spec.num_samples
        if spec.search:
            lines.append("search: " + ", ".join(f"{a} ~ {d.describe()}"
                                                for a, d in spec.search.items()))
        total = len(trials) * samples
        lines.append(f"{total} trial(s) = {len(trials)} grid point(s) x {samples} sample(s); "
                     f"driver per trial {spec.trial_resources}; "
                     f"max concurrent {spec.max_concurrent_trials or 'auto'}; "
                     f"scheduler {spec.scheduler.type if spec.scheduler else 'none'}")
    else:
        lines.append(f"{len(trials)} trial(s)")
    return "\n".join(lines)


def auto_concurrency(spec: SweepSpec, trials: list[TrialPlan],
                     cluster: Mapping[str, float]) -> int:
    """How many trials fit in `cluster` (`ray.cluster_resources()`) at once.

    A trial holds its driver's `trial_resources` plus its workers' CPUs and GPUs; the largest
    trial sets the pace. Always at least 1.
    """
    per_trial = [trial_resources_summary(t.config) for t in trials]
    cpu = max(c for _, c, _ in per_trial) + spec.trial_resources.get("CPU", 0.0)
    gpu = max(g for _, _, g in per_trial) + spec.trial_resources.get("GPU", 0.0)
    fits = [cluster.get("CPU", 0.0) / cpu]
    if gpu > 0:
        fits.append(cluster.get("GPU", 0.0) / gpu)
    return max(1, math.floor(min(fits) + 1e-9))


def run_sweep(spec: SweepSpec, *, resume: bool = False, restart_changed: bool = False):
    """Run the sweep with Ray Tune (Train inside Tune), log it to MLflow, then aggregate.

    Local Ray is started (and stopped) unless a cluster address is given (`ray.address`,
    `RAY_ADDRESS`) or Ray is already initialised. Failed trials do not stop the sweep: they are
    listed in the result, their MLflow runs end FAILED, and the finished trials are aggregated.
    With `resume`, a sweep continues per trial and reuses its MLflow parent run: finished trials
    are reused, new, unfinished (from their last checkpoint) and failed ones run; a trial whose
    resolved config changed is refused with the diff unless `restart_changed`.

    Returns:
        `dear_ray.tune.runner.SweepResult` (table, failed trials, MLflow ids).
    """
    from dear_ray.tune.runner import execute_sweep  # imports Ray: not needed for --dry-run

    return execute_sweep(spec, resume=resume, restart_changed=restart_changed)
