"""Sweep YAML -> Ray Tune grid of training trials (see `dear_ray.tune.sweep`), stage by stage for
a sweep with stages; `run_sweep` (`dear_ray.tune.runner`) runs one."""

from dear_ray.tune.sweep import (
    SweepError,
    SweepSpec,
    TrialPlan,
    expand_trials,
    format_trials,
    load_sweep,
    restrict_sweep,
)

__all__ = ["SweepError", "SweepSpec", "TrialPlan", "expand_trials", "format_trials", "load_sweep",
           "restrict_sweep", "run_sweep"]


def __getattr__(name: str):
    # the runner imports MLflow and pandas: only when a sweep runs, not for a dry run
    if name == "run_sweep":
        from dear_ray.tune.runner import run_sweep

        return run_sweep
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
