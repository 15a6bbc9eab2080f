"""What a sweep's trials reserve and the `dear-ray sweep --dry-run` listing (the stage graph of
a sweep with stages, then one line per trial)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING

from dear_ray.models.cost import cost_summary
from dear_ray.scores import methods_for_head
from dear_ray.tune._sections import fidelity_summary

if TYPE_CHECKING:
    from dear_ray.config import ExperimentConfig
    from dear_ray.tune.sweep import SweepSpec, TrialPlan


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
    overrides = [", ".join([f"{k}={v}" for k, v in t.overrides.items()]
                           + ([f"model.pretrained=<from {t.source}>"] if t.source else []))
                 or "(base)" for t in trials]
    owidth = max((len(o) for o in overrides), default=9)
    lines = format_stage_graph(trials)
    lines.append(f"{'trial':<{width}}  workers  CPUs  GPUs  {'methods':<{mwidth}}  "
                 f"{'overrides':<{owidth}} | fidelity | cost")
    for t, method, over in zip(trials, methods, overrides, strict=True):
        workers, cpus, gpus = trial_resources_summary(t.config)
        lines.append(f"{t.name:<{width}}  {workers:>7}  {cpus:>4g}  {gpus:>4g}  {method:<{mwidth}}  "
                     f"{over:<{owidth}} | {fidelity_summary(t.config)} | {cost_summary(t.config)}")
    if spec is not None:
        samples = spec.num_samples
        if spec.search:
            lines.append("search: " + ", ".join(f"{a} ~ {d.describe()}"
                                                for a, d in spec.search.items()))
        if spec.optimize is not None:
            lines.append(spec.optimize.describe())
        total = len(trials) * samples
        stages = f" in {len(spec.stages)} stages" if spec.stages else ""
        lines.append(f"{total} trial(s){stages} = {len(trials)} grid point(s) x {samples} "
                     "sample(s); "
                     f"driver per trial {spec.trial_resources}; "
                     f"max concurrent {spec.max_concurrent_trials or 'auto'}; "
                     f"scheduler {spec.scheduler.type if spec.scheduler else 'none'}"
                     + ("; search optuna" if spec.optimize is not None else ""))
    else:
        lines.append(f"{len(trials)} trial(s)")
    return "\n".join(lines)


def format_stage_graph(trials: list[TrialPlan]) -> list[str]:
    """The stages of a sweep with `stages`, in run order: a line per trial with its stage and the
    `<stage>/<trial>` it starts from (`-`: its own `model.pretrained`, or none). Empty for a
    sweep without stages."""
    if not any(t.stage for t in trials):
        return []
    swidth = max(len("stage"), *(len(t.stage) for t in trials))
    twidth = max(len("trial"), *(len(t.name) for t in trials))
    lines = ["stages, in run order (the trials of a stage run in parallel; `from`: the trial whose "
             "last checkpoint starts it):", f"  {'stage':<{swidth}}  {'trial':<{twidth}}  from"]
    lines += [f"  {t.stage:<{swidth}}  {t.name:<{twidth}}  {t.source or '-'}" for t in trials]
    return [*lines, ""]


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
