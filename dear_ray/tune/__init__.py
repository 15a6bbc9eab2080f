"""Sweep YAML -> Ray Tune grid of training trials (see `dear_ray.tune.sweep`)."""

from dear_ray.tune.sweep import (
    SweepError,
    SweepSpec,
    TrialPlan,
    expand_trials,
    format_trials,
    load_sweep,
    restrict_sweep,
    run_sweep,
)

__all__ = ["SweepError", "SweepSpec", "TrialPlan", "expand_trials", "format_trials", "load_sweep",
           "restrict_sweep", "run_sweep"]
