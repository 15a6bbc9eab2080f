"""Run a `SweepSpec` with Ray Tune: Train inside Tune, MLflow parent/child runs, then the report.

Two levels, as Ray 2.60 requires: Tune runs `_trial_driver` (a function reserving a fraction of a
CPU, `trial_resources`), which calls `dear_ray.train.driver.run_training` with a
`TuneReportCallback` so the Train workers' reports reach Tune (and an ASHA scheduler). A
`Tuner(TorchTrainer(...))` is not used: it fails in 2.60.

MLflow: the experiment and the sweep's parent run are created here, in the driver process, before
any trial starts (first-time SQLite creation races). `run_training` opens each trial's child run,
found again by (parent run, trial name) when a trial is resumed, so a resumed trial never
duplicates its run; rank 0 logs into it by run id.
"""

from __future__ import annotations

import logging
import os
import re
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import yaml
from mlflow import MlflowClient

from dear_ray.config import load_config
from dear_ray.tracking.mlflow_runs import (
    artifact_location_for,
    check_tracking_uri,
    ensure_experiment,
    find_run,
    resolve_tracking_uri,
    start_parent_run,
)
from dear_ray.tune.sweep import SweepError, SweepSpec, TrialPlan, auto_concurrency, expand_trials

log = logging.getLogger(__name__)
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
TUNE_DIR_NAME = "_tune"  # Tune's experiment folder under <sweep_dir>/ray (Train runs use trial names)


@dataclass
class SweepResult:
    """What a sweep produced.

    Attributes:
        table: the aggregator's results table (one row per method per trial), None when no trial
            left score stores.
        failed: trial name -> error summary, for trials that raised.
        trials: names of every trial Tune ran or restored.
        timings: seconds spent in `setup_s` (validation, MLflow), `ray_init_s`, `tune_fit_s`
            (all trials) and `report_s` (closing runs, the aggregator).
    """

    name: str
    sweep_dir: Path
    tracking_uri: str
    experiment_id: str
    parent_run_id: str
    table: pd.DataFrame | None
    failed: dict[str, str] = field(default_factory=dict)
    trials: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)

    def summary(self) -> str:
        lines = [f"sweep {self.name}: {len(self.trials)} trial(s), {len(self.failed)} failed; "
                 f"MLflow {self.tracking_uri} parent run {self.parent_run_id}"]
        lines += [f"  FAILED {name}: {err}" for name, err in self.failed.items()]
        return "\n".join(lines)


def experiment_name(spec: SweepSpec) -> str:
    """The sweep's MLflow experiment (`SweepSpec.experiment`): `tracking.experiment` or its name."""
    return spec.experiment


def execute_sweep(spec: SweepSpec, *, resume: bool = False) -> SweepResult:
    """Run every trial of `spec` with Ray Tune, then aggregate; see `dear_ray.tune.sweep.run_sweep`.

    Raises:
        TrackingError: the tracking server is unreachable (before anything starts).
        SweepError: the sweep already ran and `resume` is False.
    """
    from ray import tune

    clock = time.perf_counter()
    timings: dict[str, float] = {}
    plans = expand_trials(spec)
    tracking_uri = resolve_tracking_uri(spec.base)
    check_tracking_uri(tracking_uri)
    sweep_dir = spec.sweep_dir
    tune_path = sweep_dir / "ray" / TUNE_DIR_NAME
    restoring = resume and tune.Tuner.can_restore(str(tune_path))
    if tune_path.exists() and not resume:
        raise SweepError(f"{spec.source}: sweep {spec.name!r} already has results in {tune_path}; "
                         "resume it (--resume) or delete that folder to start over")

    exp_name = experiment_name(spec)
    experiment_id = ensure_experiment(
        tracking_uri, exp_name,
        artifact_location=artifact_location_for(tracking_uri, spec.base.tracking.run_dir))
    parent_run_id = start_parent_run(tracking_uri, experiment_id, sweep=spec.name, resume=resume)
    client = MlflowClient(tracking_uri)
    _log_sweep_to_parent(tracking_uri, parent_run_id, spec, plans)
    # every trial gets the resolved URI, so workers need no environment variable
    trial_configs = {p.name: p.config.override({"tracking.uri": tracking_uri}).to_dict()
                     for p in plans}
    trainable = tune.with_resources(_make_trial_driver(trial_configs, spec.name, parent_run_id),
                                    dict(spec.trial_resources))
    timings["setup_s"] = time.perf_counter() - clock

    try:
        outcomes = _fit(spec, plans, trainable, tune_path, restoring, timings)
    except BaseException:
        client.set_terminated(parent_run_id, status="KILLED")
        raise
    clock = time.perf_counter()
    failed = {name: err for name, (err, _) in outcomes.items() if err is not None}
    _close_child_runs(tracking_uri, experiment_id, parent_run_id, outcomes, trial_configs)
    for name, err in failed.items():
        log.error("trial %s failed: %s", name, err)

    from dear_ray.tracking.aggregate import report_sweep

    table = report_sweep(sweep_dir, tracking_uri=tracking_uri, experiment=exp_name)
    client.log_metric(parent_run_id, "failed_trials", float(len(failed)))
    client.set_terminated(parent_run_id, status="FAILED" if failed else "FINISHED")
    timings["report_s"] = time.perf_counter() - clock
    result = SweepResult(spec.name, sweep_dir, tracking_uri, experiment_id, parent_run_id,
                         table, failed, sorted(outcomes), timings)
    log.info(result.summary())
    return result


def _fit(spec: SweepSpec, plans: list[TrialPlan], trainable, tune_path: Path, restoring: bool,
         timings: dict[str, float]) -> dict[str, tuple[str | None, dict]]:
    """Connect Ray, run (or restore) the Tuner, and stop the Ray this call started."""
    from ray import tune

    clock = time.perf_counter()
    started_ray = _connect_ray(spec)
    try:
        import ray

        timings["ray_init_s"] = time.perf_counter() - clock
        clock = time.perf_counter()
        concurrency = spec.max_concurrent_trials or \
            auto_concurrency(spec, plans, ray.cluster_resources())
        if restoring:
            log.info("restoring sweep %s from %s", spec.name, tune_path)
            tuner = tune.Tuner.restore(str(tune_path), trainable=trainable, resume_errored=True)
        else:
            tuner = tune.Tuner(
                trainable,
                param_space=_param_space(spec, plans),
                tune_config=_tune_config(spec, plans, concurrency),
                run_config=tune.RunConfig(
                    name=TUNE_DIR_NAME, storage_path=str(tune_path.parent),
                    failure_config=tune.FailureConfig(max_failures=spec.max_failures)),
            )
        outcomes = _trial_outcomes(tuner.fit())
        timings["tune_fit_s"] = time.perf_counter() - clock
        return outcomes
    finally:
        if started_ray:
            import ray

            ray.shutdown()


def _make_trial_driver(trial_configs: dict[str, dict], sweep: str, parent_run_id: str):
    """The Tune trainable: one trial = its validated config, then `run_training` (Ray Train)."""

    def _trial_driver(config: dict[str, Any]) -> None:
        from ray import tune as ray_tune
        from ray.tune.integration.ray_train import TuneReportCallback

        from dear_ray.train.driver import run_training

        trial_name = ray_tune.get_context().get_trial_name()
        cfg = load_config(trial_configs[config["trial"]], overrides=config.get("search") or None)
        # run_training opens the trial's child run (found again by name under the parent when
        # the trial is resumed) before its workers start; rank 0 logs into it by run id
        run_training(cfg, trial_name=trial_name, parent_run_id=parent_run_id,
                     callbacks=[TuneReportCallback()])

    _trial_driver.__name__ = _trial_driver.__qualname__ = f"{sweep}_trial"
    return _trial_driver


def _param_space(spec: SweepSpec, plans: list[TrialPlan]) -> dict[str, Any]:
    from ray import tune

    space: dict[str, Any] = {"trial": tune.grid_search([p.name for p in plans])}
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

    per_sample = bool(spec.search) or spec.num_samples > 1

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
    return tune.TuneConfig(
        num_samples=spec.num_samples, max_concurrent_trials=concurrency, scheduler=scheduler,
        metric=metric, mode=mode, trial_name_creator=trial_name, trial_dirname_creator=trial_name)


def _connect_ray(spec: SweepSpec) -> bool:
    """Join the given cluster or start a local one; True if this call made the connection.

    A cluster address (the sweep's `ray.address`, or `RAY_ADDRESS` as set by `ray job submit`)
    is joined; otherwise a fresh local instance starts (`address="local"`, so a leftover cluster
    is never picked up) with the dashboard on, which Train-in-Tune needs to release finished
    runs' CPUs. An already initialised Ray is used as is and left running.
    """
    import ray

    if ray.is_initialized():
        return False
    address = spec.ray_address or os.environ.get("RAY_ADDRESS")
    if address:
        ray.init(address=address)
    else:
        os.environ.setdefault("RAY_AUTH_MODE", "disabled")
        ray.init(address="local", num_cpus=spec.ray_num_cpus or os.cpu_count(),
                 include_dashboard=True)
    return True


def _trial_outcomes(grid) -> dict[str, tuple[str | None, dict[str, Any]]]:
    """Trial name -> (None or a short error, the trial's Tune config), from a `ResultGrid`."""
    outcomes = {}
    for result in grid:
        name = Path(result.path).name if result.path else str(result.config.get("trial"))
        err = result.error
        outcomes[name] = (None if err is None else _short_error(err), dict(result.config or {}))
    return outcomes


def _short_error(err: BaseException) -> str:
    text = "".join(traceback.format_exception_only(type(err), err))
    # a RayTaskError carries the remote traceback; its last line is the original exception
    lines = [line for line in _ANSI.sub("", text).splitlines() if line.strip()]
    return lines[-1].strip() if lines else type(err).__name__


def _close_child_runs(tracking_uri: str, experiment_id: str, parent_run_id: str,
                      outcomes: dict[str, tuple[str | None, dict]],
                      trial_configs: dict[str, dict]) -> None:
    """Log each trial's resolved config; errored runs end FAILED, runs still RUNNING KILLED.

    A run still RUNNING after Tune finished without an error was stopped by the scheduler.
    """
    client = MlflowClient(tracking_uri)
    for name, (err, tune_config) in outcomes.items():
        run_id = find_run(tracking_uri, experiment_id, run_name=name, parent_run_id=parent_run_id)
        if run_id is None:
            continue
        if tune_config.get("trial") in trial_configs:
            cfg = load_config(trial_configs[tune_config["trial"]],
                              overrides=tune_config.get("search") or None)
            client.log_text(run_id, yaml.safe_dump(cfg.to_dict(), sort_keys=False), "config.yaml")
        if err is not None:
            client.set_tag(run_id, "error", err[:5000])
            client.set_terminated(run_id, status="FAILED")
        elif client.get_run(run_id).info.status == "RUNNING":
            client.set_terminated(run_id, status="KILLED")


def _log_sweep_to_parent(tracking_uri: str, parent_run_id: str, spec: SweepSpec,
                         plans: list[TrialPlan]) -> None:
    from dear_ray.tune.sweep import format_trials

    client = MlflowClient(tracking_uri)
    existing = client.get_run(parent_run_id).data.params
    params = {"num_trials": str(len(plans)), "num_samples": str(spec.num_samples),
              "grid_axes": ",".join(spec.grid) or "-", "cases": str(len(spec.cases))}
    for key, value in params.items():
        if existing.get(key) is None:
            client.log_param(parent_run_id, key, value)
    client.log_text(parent_run_id, format_trials(plans, spec), "sweep/trials.txt")
    if spec.path is not None:
        client.log_artifact(parent_run_id, str(spec.path), "sweep")
