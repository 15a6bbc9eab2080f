"""One Tune run of a sweep's trials (a stage's, in a sweep with stages) on a Ray cluster.

Two levels, as Ray 2.60 requires: Tune runs `_trial_driver` (a function reserving a fraction of a
CPU, `trial_resources`), which calls `dear_ray.train.driver.run_training` with a
`TuneReportCallback` so the Train workers' reports reach Tune (and an ASHA scheduler). A
`Tuner(TorchTrainer(...))` is not used: it fails in 2.60.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from dear_ray.config import ExperimentConfig, load_config
from dear_ray.tune._callbacks import (
    TUNE_CONSOLE_OPTIONS,
    ConsoleLines,
    NoIncompleteList,
    trial_outcomes,
)
from dear_ray.tune.optimize import (
    OptimizeSpec,
    make_searcher,
    slug_params,
    trial_objectives,
    tune_key,
)
from dear_ray.tune.sweep import SweepSpec, TrialPlan, auto_concurrency, tune_trial_resources

# Tune's experiment folder under <sweep_dir>/ray (Train runs use the trial names)
TUNE_DIR_NAME = "_tune"
STRICT_METRICS_ENV = "TUNE_DISABLE_STRICT_METRIC_CHECKING"


def next_tune_path(tune_path: Path) -> Path:
    """`_tune` for a sweep's first Tune run, `_tune_2`, `_tune_3`... for each later one (a
    resumed run, a later stage)."""
    if not tune_path.exists():
        return tune_path
    n = 2
    while tune_path.with_name(f"{tune_path.name}_{n}").exists():
        n += 1
    return tune_path.with_name(f"{tune_path.name}_{n}")


@contextmanager
def ray_session(spec: SweepSpec, timings: dict[str, float]) -> Iterator[None]:
    """Connect Ray for the sweep's Tune runs (`_connect_ray`), and stop the Ray it started."""
    clock = time.perf_counter()
    from dear_ray.train.driver import set_ray_train_options

    set_ray_train_options()
    for key, value in TUNE_CONSOLE_OPTIONS.items():
        os.environ.setdefault(key, value)
    private = _connect_ray(spec)
    try:
        timings["ray_init_s"] = time.perf_counter() - clock
        if private is not None:
            print(f"Ray logs (workers' output, Train and Tune): {private.log_dir}", flush=True)
        yield
    finally:
        import ray

        if private is not None:
            private.stop()
        elif ray.is_initialized() and _joined_cluster[0]:
            ray.shutdown()
            _joined_cluster[0] = False


def tune_fit(spec: SweepSpec, plans: list[TrialPlan], trial_configs: dict[str, dict], runs, *,
             parent_run_id: str, experiment: str, max_concurrent: int | None = None
             ) -> dict[str, tuple[str | None, dict]]:
    """Run `plans` as one Tune run (Ray connected: `ray_session`).

    Returns:
        trial name -> (None or the one-line cause of its failure, its Tune config).
    """
    import ray
    from ray import tune

    trainable = tune.with_resources(
        _make_trial_driver(trial_configs, spec.name, parent_run_id, experiment, spec.optimize),
        _trial_resources_of(spec, {p.name: p.config for p in plans}))
    concurrency = max_concurrent or spec.max_concurrent_trials or \
        auto_concurrency(spec, plans, ray.cluster_resources())
    tune_path = next_tune_path(spec.sweep_dir / "ray" / TUNE_DIR_NAME)
    tuner = tune.Tuner(
        trainable,
        param_space=_param_space(spec, plans),
        tune_config=_tune_config(spec, plans, concurrency),
        run_config=tune.RunConfig(
            name=tune_path.name, storage_path=str(tune_path.parent), verbose=0,
            callbacks=[ConsoleLines(trial_configs, len(plans) * spec.num_samples,
                                    sweep_dir=spec.sweep_dir), runs],
            failure_config=tune.FailureConfig(max_failures=spec.max_failures)),
    )
    from dear_ray.timeline import SWEEP_FILE, mark

    mark(spec.sweep_dir, SWEEP_FILE, "tune_fit_start")
    tune_log = logging.getLogger("ray.tune.tune")
    tune_log.addFilter(NoIncompleteList)
    # an optimize sweep's epochs report no objectives (only its trials' last results do), which
    # Tune's check of every result against the searcher's metrics would refuse
    strict = os.environ.get(STRICT_METRICS_ENV)
    if spec.optimize is not None:
        os.environ[STRICT_METRICS_ENV] = "1"
    try:
        outcomes = trial_outcomes(tuner.fit(), spec.sweep_dir)
    finally:
        tune_log.removeFilter(NoIncompleteList)
        if strict is None:
            os.environ.pop(STRICT_METRICS_ENV, None)
        else:
            os.environ[STRICT_METRICS_ENV] = strict
    mark(spec.sweep_dir, SWEEP_FILE, "tune_fit_done")
    return outcomes


def _per_sample(spec: SweepSpec) -> bool:
    """Trials named `<case>_<trial id>` (a search space or several samples): Tune names them."""
    return bool(spec.search) or spec.num_samples > 1


def _make_trial_driver(trial_configs: dict[str, dict], sweep: str, parent_run_id: str,
                       experiment: str, optimize: OptimizeSpec | None = None):
    """The Tune trainable: one trial = its validated config, then `run_training` (Ray Train);
    with `optimize`, then the trial's objectives (`report_objectives`).

    The trial's MLflow run is opened by the sweep's driver when the trial starts (`TrialRuns`);
    the trial's rank 0 finds it by name under the parent run (`run_training(opened_run=...)`),
    so this process never opens MLflow itself.
    """

    def _trial_driver(config: dict[str, Any]) -> None:
        from ray import tune as ray_tune

        from dear_ray.timeline import mark

        trial_name = ray_tune.get_context().get_trial_name()
        base = trial_configs[config["trial"]]
        run_root = Path(base["tracking"]["run_dir"]) / base["name"]
        mark(run_root, trial_name, "trial_driver_start")
        from ray.tune.integration.ray_train import TuneReportCallback

        from dear_ray.train.driver import run_training

        mark(run_root, trial_name, "trial_driver_imports_done")
        cfg = load_config(trial_configs[config["trial"]], overrides=config.get("search") or None)
        # a worker group's reports reach Tune through Ray Train's callback; an in-process loop
        # (num_workers 0) reports to Tune itself
        callbacks = [TuneReportCallback()] if cfg.resources.num_workers > 0 else []
        last = run_training(cfg, trial_name=trial_name, parent_run_id=parent_run_id,
                            callbacks=callbacks, tune_trial=True, opened_run=(None, experiment))
        if optimize is not None:
            report_objectives(optimize, cfg, trial_name, config.get("search") or {}, last)
        mark(run_root, trial_name, "trial_driver_done")

    _trial_driver.__name__ = _trial_driver.__qualname__ = f"{sweep}_trial"
    return _trial_driver


def report_objectives(optimize: OptimizeSpec, cfg: ExperimentConfig, trial_name: str,
                      params: dict[str, Any], last: dict[str, Any]) -> dict[str, float]:
    """A finished trial's objectives (`trial_objectives`): written beside the sweep's stores for
    the Pareto report, then reported to Tune with the numbers of the trial's `last` report (the
    trial's last result, which Optuna is told and the console's closing line reads)."""
    from ray import tune as ray_tune

    from dear_ray.tracking.pareto_report import write_trial_objectives

    values = trial_objectives(cfg, trial_name, optimize.objectives)
    write_trial_objectives(cfg.run_root(), trial_name, values, slug_params(params))
    result = {key: value for key, value in (last or {}).items()
              if isinstance(value, (int, float)) and not isinstance(value, bool)}
    result.update({tune_key(name): value for name, value in values.items()})
    ray_tune.report(result)
    return result


def _trial_resources_of(spec: SweepSpec, configs: dict[str, ExperimentConfig]):
    """Tune's resources for a trial, from its plan (`tune_trial_resources`): the trial driver's
    `trial_resources`, plus one worker's share when the loop runs in the trial itself
    (`resources.num_workers: 0`)."""
    from ray.tune import PlacementGroupFactory

    def resources(config: dict[str, Any]) -> PlacementGroupFactory:
        cfg = configs[config["trial"]]
        sampled = {k: v for k, v in (config.get("search") or {}).items()
                   if k.startswith("resources.")}
        if sampled:  # a search axis over the resources themselves
            cfg = cfg.override(sampled)
        return PlacementGroupFactory([tune_trial_resources(spec, cfg)])

    return resources


def _param_space(spec: SweepSpec, plans: list[TrialPlan]) -> dict[str, Any]:
    from ray import tune

    # Optuna cannot sample a grid: an `optimize` sweep has one plan (`check_optimize_sweep`)
    space: dict[str, Any] = {"trial": (plans[0].name if spec.optimize is not None
                                       else tune.grid_search([p.name for p in plans]))}
    if spec.search:
        samplers = {"uniform": tune.uniform, "loguniform": tune.loguniform,
                    "randint": lambda lo, hi: tune.randint(lo, hi + 1)}
        space["search"] = {
            axis: (tune.choice(list(dim.values)) if dim.type == "choice"
                   else samplers[dim.type](dim.low, dim.high))
            for axis, dim in spec.search.items()}
    return space


def _tune_config(spec: SweepSpec, plans: list[TrialPlan], concurrency: int):
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler

    per_sample = _per_sample(spec)

    def trial_name(trial) -> str:
        base = trial.config["trial"]
        return f"{base}_{trial.trial_id}" if per_sample else base

    scheduler = metric = mode = None
    if spec.scheduler is not None:
        s = spec.scheduler
        max_t = s.max_t or max(int(p.config.optim.epochs) for p in plans)
        scheduler = ASHAScheduler(time_attr="training_iteration", max_t=max_t,
                                  grace_period=s.grace_period,
                                  reduction_factor=s.reduction_factor)
        metric, mode = s.metric, s.mode
    # an optimize sweep's searcher holds its objectives (Tune's metric/mode take one metric)
    search_alg = make_searcher(spec.optimize) if spec.optimize is not None else None
    # reuse_actors: a finished trial's driver process runs the next trial (Tune resets the
    # function), so only the first `concurrency` trials pay the driver's process start and its
    # imports of torch and Ray Train (~4 s a trial here); the trial driver keeps no state
    return tune.TuneConfig(
        num_samples=spec.num_samples, max_concurrent_trials=concurrency, scheduler=scheduler,
        search_alg=search_alg,
        metric=metric, mode=mode, trial_name_creator=trial_name, trial_dirname_creator=trial_name,
        reuse_actors=True)


_joined_cluster = [False]


def _connect_ray(spec: SweepSpec):
    """Join the given cluster or start a private local one (`PrivateRay`, returned).

    A cluster address (the sweep's `ray.address`, or `RAY_ADDRESS` as set by `ray job submit`)
    is joined (None is returned; the connection is closed afterwards); otherwise a private local
    instance starts (`dear_ray.tune.local_ray`: its own temp dir and address, the dashboard on,
    which Train-in-Tune needs to release finished runs' CPUs). An already initialised Ray is used
    as is and left running.
    """
    import ray

    if ray.is_initialized():
        return None
    address = spec.ray_address or os.environ.get("RAY_ADDRESS")
    if address:
        ray.init(address=address, log_to_driver=False,
                 logging_config=ray.LoggingConfig(log_level="WARNING"))
        _joined_cluster[0] = True
        return None
    from dear_ray.tune.local_ray import PrivateRay

    private = PrivateRay(spec.sweep_dir, num_cpus=spec.ray_num_cpus or os.cpu_count() or 1)
    private.start()
    return private
