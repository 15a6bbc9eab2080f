"""Run a `SweepSpec` with Ray Tune: Train inside Tune, MLflow parent/child runs, then the report.

Two levels, as Ray 2.60 requires: Tune runs `_trial_driver` (a function reserving a fraction of a
CPU, `trial_resources`), which calls `dear_ray.train.driver.run_training` with a
`TuneReportCallback` so the Train workers' reports reach Tune (and an ASHA scheduler). A
`Tuner(TorchTrainer(...))` is not used: it fails in 2.60.

MLflow: the experiment and the sweep's parent run are created here, in the driver process, before
any trial starts (first-time SQLite creation races). Each trial's child run is opened here too, by
a Tune callback when the trial starts (`TrialRuns`: its start time is the trial's, not the
sweep's), found again by (parent run, trial name) when a trial is resumed, so a resumed trial
never duplicates its run; the trial's rank 0 finds it by that name and logs into it.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pandas as pd
import yaml
from mlflow import MlflowClient

from dear_ray.config import ExperimentConfig, load_config
from dear_ray.train.bad_videos import describe_failure
from dear_ray.tracking.mlflow_runs import (
    artifact_location_for,
    check_tracking_uri,
    ensure_experiment,
    find_run,
    resolve_tracking_uri,
    start_parent_run,
)
from dear_ray.tune.sweep import (
    SweepError,
    SweepSpec,
    TrialPlan,
    auto_concurrency,
    expand_trials,
    tune_trial_resources,
)

log = logging.getLogger(__name__)
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
        reused: finished trials of an earlier run that a resume did not train again.
        notes: warnings about the table (trials trained under settings the sweep does not vary,
            `mixed_settings`).
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
    reused: list[str] = field(default_factory=list)

    notes: list[str] = field(default_factory=list)

    def summary(self) -> str:
        ran = len(self.trials) - len(self.reused)
        in_table = 0 if self.table is None or self.table.empty else self.table["trial"].nunique()
        lines = [f"sweep {self.name}: {ran} trial(s) run now"
                 + (f", {len(self.reused)} reused" if self.reused else "")
                 + f", {len(self.failed)} failed; the table has {in_table} trial(s); MLflow "
                   f"{self.tracking_uri} parent run {self.parent_run_id}"]
        lines += [f"  FAILED {name}: {err}" for name, err in self.failed.items()]
        lines += [f"  warning: {note}" for note in self.notes]
        return "\n".join(lines)


def experiment_name(spec: SweepSpec) -> str:
    """The sweep's MLflow experiment (`SweepSpec.experiment`): `tracking.experiment` or its name."""
    return spec.experiment


def execute_sweep(spec: SweepSpec, *, resume: bool = False,
                  restart_changed: bool = False) -> SweepResult:
    """Run every trial of `spec` with Ray Tune, then aggregate; see `dear_ray.tune.sweep.run_sweep`.

    Resuming works per trial, from `<sweep_dir>/trials.json` (each trial's resolved config, written
    when it is first scheduled): a trial whose MLflow child run FINISHED is reused; a new trial, an
    unfinished one (its Train run continues from its last checkpoint) and a failed one run again.
    A trial whose resolved config differs from the recorded one is refused with the diff unless
    `restart_changed`, which starts it over (its checkpoints and stores are deleted, its old MLflow
    run is kept, renamed `<trial> (replaced ...)`).

    Raises:
        TrackingError: the tracking store is unusable (before anything starts).
        SweepError: the sweep already ran and `resume` is False; or a trial's config changed.
        PreflightError: a data, checkpoint or run-dir problem found before Ray starts.
    """
    from ray import tune

    from dear_ray.train.preflight import preflight

    clock = time.perf_counter()
    timings: dict[str, float] = {}
    plans = expand_trials(spec)
    tracking_uri = resolve_tracking_uri(spec.base)
    check_tracking_uri(tracking_uri)
    preflight([p.config for p in plans], tracking_uri=tracking_uri)
    sweep_dir = spec.sweep_dir
    tune_path = sweep_dir / "ray" / TUNE_DIR_NAME
    state = sweep_dir / TRIALS_FILE
    if (tune_path.exists() or state.exists()) and not resume:
        raise SweepError(f"{spec.source}: sweep {spec.name!r} already has results in {sweep_dir}; "
                         "continue it with --resume, run this as a separate sweep with --set "
                         f"tracking.run_dir=<another folder> (e.g. {_other_run_dir(spec)}), or "
                         "delete that folder to start over")
    # every trial gets the resolved URI, so workers need no environment variable
    trial_configs = {p.name: p.config.override({"tracking.uri": tracking_uri}).to_dict()
                     for p in plans}
    recorded = _read_trials_state(state) if resume else {}
    changed = {name: diff for name in trial_configs if name in recorded
               and (diff := config_diff(recorded[name], trial_configs[name]))}
    if changed and not restart_changed:
        raise SweepError(f"{spec.source}: --resume: the resolved config of {len(changed)} trial(s) "
                         "changed since they ran:\n" + format_changes(changed) + "\nrestore the old "
                         "settings, pass --restart-changed to train those trials again from "
                         "scratch (their old MLflow runs are kept, marked replaced), or run the "
                         "new settings as a separate sweep with --set tracking.run_dir=<another "
                         f"folder> (e.g. {_other_run_dir(spec)}), without --resume")

    exp_name = experiment_name(spec)
    experiment_id = ensure_experiment(
        tracking_uri, exp_name,
        artifact_location=artifact_location_for(tracking_uri, spec.base.tracking.run_dir))
    parent_run_id = start_parent_run(tracking_uri, experiment_id, sweep=spec.name, resume=resume)
    client = MlflowClient(tracking_uri)
    for name in changed:
        _replace_trial(client, tracking_uri, experiment_id, parent_run_id, sweep_dir, name)
    reused = [] if not resume else [
        name for name in trial_configs if name not in changed and _finished(
            client, tracking_uri, experiment_id, parent_run_id, name)]
    to_run = [p for p in plans if p.name not in reused]
    _write_trials_state(state, {**recorded, **{p.name: trial_configs[p.name] for p in to_run}})
    _log_sweep_to_parent(tracking_uri, parent_run_id, spec, plans)
    timings["setup_s"] = time.perf_counter() - clock
    if reused:
        print(f"reusing {len(reused)} finished trial(s) of an earlier run: {', '.join(reused)} "
              f"(delete {sweep_dir} to start over)", flush=True)

    outcomes: dict[str, tuple[str | None, dict]] = {}
    if to_run:
        trainable = tune.with_resources(
            _make_trial_driver(trial_configs, spec.name, parent_run_id, exp_name),
            _trial_resources_of(spec, {p.name: p.config for p in to_run}))
        runs = TrialRuns(trial_configs, spec, parent_run_id, exp_name)
        try:
            outcomes = _fit(spec, to_run, trainable, _next_tune_path(tune_path), timings,
                            trial_configs, runs)
        except BaseException:
            client.set_terminated(parent_run_id, status="KILLED")
            raise
    clock = time.perf_counter()
    failed = {name: err for name, (err, _) in outcomes.items() if err is not None}
    _close_child_runs(tracking_uri, experiment_id, parent_run_id, outcomes, trial_configs)

    from dear_ray.tracking.aggregate import report_sweep

    notes = sweep_notes(spec)
    for note in notes:
        print(f"warning: {note}", flush=True)
    table = report_sweep(sweep_dir, tracking_uri=tracking_uri, experiment=exp_name,
                         protocol=spec.base.eval.protocol, notes=notes)
    client.log_metric(parent_run_id, "failed_trials", float(len(failed)))
    client.set_terminated(parent_run_id, status="FAILED" if failed else "FINISHED")
    timings["report_s"] = time.perf_counter() - clock
    result = SweepResult(spec.name, sweep_dir, tracking_uri, experiment_id, parent_run_id,
                         table, failed, sorted(set(outcomes) | set(reused)), timings,
                         reused=reused, notes=notes)
    log.info(result.summary())
    return result


def _other_run_dir(spec: SweepSpec) -> str:
    """A run folder beside the sweep's own, for a variant of it (`runs/demo_2`)."""
    run_dir = Path(spec.base.tracking.run_dir)
    n = 2
    while (run_dir.with_name(f"{run_dir.name}_{n}") / spec.name).exists():
        n += 1
    return str(run_dir.with_name(f"{run_dir.name}_{n}"))


def sweep_notes(spec: SweepSpec) -> list[str]:
    """Warnings about the sweep's table: the trials with score stores that were trained under
    settings the sweep gives them all alike (`mixed_settings`, from `trials.json`)."""
    from dear_ray.tracking.aggregate import find_trial_stores

    expected = {p.name: p.config.to_dict() for p in expand_trials(replace(spec, only=()))}
    return mixed_settings(_read_trials_state(spec.sweep_dir / TRIALS_FILE), expected,
                          list(find_trial_stores(spec.sweep_dir)))


def mixed_settings(recorded: dict[str, dict], expected: dict[str, dict],
                   trials: list[str]) -> list[str]:
    """Settings that differ between `trials` as they were trained (`recorded`: their resolved
    configs, the sweep's `trials.json`) although the sweep gives them all the same value
    (`expected`: the configs it expands to now): e.g. a trial restarted with `--set
    optim.epochs=2` beside trials trained for 3. Fields the sweep itself varies (its cases and
    axes, and what follows from them) are not news. One line per field."""
    names = [t for t in trials if t in recorded and t in expected]
    if len(names) < 2:
        return []
    flat = {t: _flatten(recorded[t]) for t in names}
    planned = {t: _flatten(expected[t]) for t in names}
    lines = []
    for key in sorted({k for f in flat.values() for k in f} - {"name", "tracking.uri"}):
        if len({json.dumps(planned[t].get(key), default=str) for t in names}) > 1:
            continue  # the sweep varies it
        by_value: dict[str, list[str]] = {}
        for trial in names:
            by_value.setdefault(json.dumps(flat[trial].get(key, "(unset)"), default=str),
                                []).append(trial)
        if len(by_value) > 1:
            lines.append(f"the trials in this table were trained with different {key} although "
                         "the sweep gives them the same: " + "; ".join(
                             f"{value} ({', '.join(group)})" for value, group in by_value.items()))
    return lines


def _flatten(config: dict, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in config.items():
        if isinstance(value, dict) and value:
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def format_changes(changed: dict[str, list[str]]) -> str:
    """`  <run>: <field>: <old> -> <new>; ...`, a line per run (`config_diff`'s lines)."""
    return "\n".join(f"  {name}: " + "; ".join(diff) for name, diff in changed.items())


def config_diff(old: Any, new: Any, prefix: str = "") -> list[str]:
    """Dotted fields whose values differ between two resolved config dicts: `field: old -> new`."""
    if isinstance(old, dict) and isinstance(new, dict):
        out = []
        for key in sorted(set(old) | set(new), key=str):
            out += config_diff(old.get(key, _MISSING), new.get(key, _MISSING),
                               f"{prefix}{key}." if prefix or key else "")
        return out
    if old == new:
        return []
    field_name = prefix.rstrip(".")
    show = (lambda v: "(unset)" if v is _MISSING else repr(v))
    return [f"{field_name}: {show(old)} -> {show(new)}"]


_MISSING = object()
TRIALS_FILE = "trials.json"


def _read_trials_state(path: Path) -> dict[str, dict]:
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise SweepError(f"{path}: unreadable trial state ({err}); delete it to resume without "
                         "config checks") from err
    return {k: v for k, v in data.items() if isinstance(v, dict)}


def _write_trials_state(path: Path, trials: dict[str, dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(trials, indent=1, sort_keys=True))
    tmp.replace(path)


def _next_tune_path(tune_path: Path) -> Path:
    """`_tune` for a sweep's first run, `_tune_2`, `_tune_3`... for each resumed run."""
    if not tune_path.exists():
        return tune_path
    n = 2
    while tune_path.with_name(f"{tune_path.name}_{n}").exists():
        n += 1
    return tune_path.with_name(f"{tune_path.name}_{n}")


def _finished(client: MlflowClient, tracking_uri: str, experiment_id: str, parent_run_id: str,
              trial: str) -> bool:
    run_id = find_run(tracking_uri, experiment_id, run_name=trial, parent_run_id=parent_run_id)
    return run_id is not None and client.get_run(run_id).info.status == "FINISHED"


def _replace_trial(client: MlflowClient, tracking_uri: str, experiment_id: str,
                   parent_run_id: str, sweep_dir: Path, trial: str) -> None:
    """Start a trial over: delete its checkpoints and stores, rename its old MLflow run."""
    import shutil

    run_id = find_run(tracking_uri, experiment_id, run_name=trial, parent_run_id=parent_run_id)
    if run_id is not None:
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        client.set_tag(run_id, "mlflow.runName", f"{trial} (replaced {stamp})")
        client.set_tag(run_id, "replaced", "true")
        if client.get_run(run_id).info.status == "RUNNING":
            client.set_terminated(run_id, status="KILLED")
    for folder in (sweep_dir / "ray" / trial, sweep_dir / "stores" / trial):
        shutil.rmtree(folder, ignore_errors=True)
    print(f"restarting trial {trial} from scratch (its config changed)", flush=True)


def _fit(spec: SweepSpec, plans: list[TrialPlan], trainable, tune_path: Path,
         timings: dict[str, float], trial_configs: dict[str, dict], runs
         ) -> dict[str, tuple[str | None, dict]]:
    """Connect Ray, run the Tuner over `plans`, and stop the Ray this call started."""
    from ray import tune

    clock = time.perf_counter()
    from dear_ray.train.driver import set_ray_train_options

    set_ray_train_options()
    for key, value in TUNE_CONSOLE_OPTIONS.items():
        os.environ.setdefault(key, value)
    private = _connect_ray(spec)
    try:
        import ray

        timings["ray_init_s"] = time.perf_counter() - clock
        clock = time.perf_counter()
        if private is not None:
            print(f"Ray logs (workers' output, Train and Tune): {private.log_dir}", flush=True)
        concurrency = spec.max_concurrent_trials or \
            auto_concurrency(spec, plans, ray.cluster_resources())
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
        tune_log.addFilter(_NoIncompleteList)
        try:
            outcomes = _trial_outcomes(tuner.fit(), spec.sweep_dir)
        finally:
            tune_log.removeFilter(_NoIncompleteList)
        mark(spec.sweep_dir, SWEEP_FILE, "tune_fit_done")
        timings["tune_fit_s"] = time.perf_counter() - clock
        return outcomes
    finally:
        if private is not None:
            private.stop()
        elif ray.is_initialized() and _joined_cluster[0]:
            ray.shutdown()
            _joined_cluster[0] = False


def _per_sample(spec: SweepSpec) -> bool:
    """Trials named `<case>_<trial id>` (a search space or several samples): Tune names them."""
    return bool(spec.search) or spec.num_samples > 1


def _make_trial_driver(trial_configs: dict[str, dict], sweep: str, parent_run_id: str,
                       experiment: str):
    """The Tune trainable: one trial = its validated config, then `run_training` (Ray Train).

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
        run_training(cfg, trial_name=trial_name, parent_run_id=parent_run_id,
                     callbacks=callbacks, tune_trial=True, opened_run=(None, experiment))
        mark(run_root, trial_name, "trial_driver_done")

    _trial_driver.__name__ = _trial_driver.__qualname__ = f"{sweep}_trial"
    return _trial_driver


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
    # reuse_actors: a finished trial's driver process runs the next trial (Tune resets the
    # function), so only the first `concurrency` trials pay the driver's process start and its
    # imports of torch and Ray Train (~4 s a trial here); the trial driver keeps no state
    return tune.TuneConfig(
        num_samples=spec.num_samples, max_concurrent_trials=concurrency, scheduler=scheduler,
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


class TrialRuns:
    """A Tune callback owning the trials' MLflow runs, in the sweep's driver process.

    When Tune starts a trial (before its function runs), its run is opened, or continued when it
    exists under the parent run (a resumed or retried trial): tags, params and the resolved
    config are logged (`dear_ray.train.driver.open_trial_run`), so the run's start time is the
    trial's. When the trial completes, its run ends FINISHED if the trial's last report says its
    evaluation is done (`DONE_KEY`); others are left to `_close_child_runs` after the fit (an
    error: FAILED; stopped by the scheduler: KILLED).
    """

    def __new__(cls, trial_configs: dict[str, dict], spec: SweepSpec, parent_run_id: str,
                experiment: str):
        from ray import tune

        from dear_ray.train.driver import DONE_KEY, open_trial_run

        tracking_uri = resolve_tracking_uri(spec.base)

        class _Runs(tune.Callback):
            def __init__(self) -> None:
                self.run_ids: dict[str, str] = {}

            def on_trial_start(self, iteration, trials, trial, **info):
                name = _trial_name(trial)
                cfg = load_config(trial_configs[trial.config["trial"]],
                                  overrides=trial.config.get("search") or None)
                logger = open_trial_run(cfg.override({"tracking.uri": tracking_uri}), name,
                                        experiment=experiment, parent_run_id=parent_run_id)
                self.run_ids[name] = logger.run_id

            def on_trial_complete(self, iteration, trials, trial, **info):
                run_id = self.run_ids.get(_trial_name(trial))
                if run_id is not None and (trial.last_result or {}).get(DONE_KEY):
                    MlflowClient(tracking_uri).set_terminated(run_id, status="FINISHED")

        return _Runs()


def _trial_error(trial) -> BaseException | None:
    """The exception a failed Tune trial raised (Tune pickles it beside its error file)."""
    import cloudpickle

    try:
        with open(trial.pickled_error_file, "rb") as fh:
            return cloudpickle.load(fh)
    except Exception:  # noqa: BLE001 - no or an unreadable file: the error file names the cause
        return None


def _trial_name(trial) -> str:
    """The name a Tune trial runs under (its folder's, set by `_tune_config`'s name creator)."""
    return Path(trial.path).name if getattr(trial, "path", None) else str(trial)


class ConsoleLines:
    """A Tune callback printing one short line per trial epoch, start, end and failure.

    Replaces Tune's own result tables (`verbose=0`); the full results are in MLflow and in the
    Tune/Train folders, the workers' output in Ray's log files.
    """

    def __new__(cls, trial_configs: dict[str, dict], total: int = 0, *,
                sweep_dir: Path | None = None):
        from ray import tune

        from dear_ray.tracking.console import epoch_line

        class _Lines(tune.Callback):
            def __init__(self) -> None:
                self.epochs = {name: int(c["optim"]["epochs"]) for name, c in trial_configs.items()}
                self.started: dict[str, float] = {}
                self.done = 0

            @staticmethod
            def _name(trial) -> str:
                return _trial_name(trial)

            def _total(self, trial) -> int:
                return self.epochs.get(trial.config.get("trial"), 0)

            def on_trial_start(self, iteration, trials, trial, **info):
                self.started[self._name(trial)] = time.perf_counter()
                print(f"[{self._name(trial)}] started", flush=True)

            def on_trial_result(self, iteration, trials, trial, result, **info):
                if "epoch" in result:
                    print(epoch_line(self._name(trial), result, self._total(trial)), flush=True)

            def on_trial_complete(self, iteration, trials, trial, **info):
                self.done += 1
                name = self._name(trial)
                took = time.perf_counter() - self.started.get(name, time.perf_counter())
                last = trial.last_result or {}
                tests = "  ".join(f"{k[:-5]} {last[k]:.1%}" for k in ("test_top1", "test_shifted_top1")
                                  if isinstance(last.get(k), (int, float)))
                print(f"[{name}] finished in {took:.0f} s  {tests}  ({self._status(trials)})",
                      flush=True)

            def on_trial_error(self, iteration, trials, trial, **info):
                self.done += 1
                name = self._name(trial)
                error = _trial_error(trial)
                cause = "see its error file" if error is None else describe_failure(
                    error, sweep_dir, name)
                print(f"[{name}] FAILED: {cause} ({self._status(trials)}; error file: "
                      f"{trial.error_file})", flush=True)

            def _status(self, trials) -> str:
                # Tune creates trials as slots free up: count the sweep's, not Tune's so far
                return f"{self.done}/{max(total, len(trials))} trials done"

        return _Lines()


def _trial_outcomes(grid, sweep_dir: Path) -> dict[str, tuple[str | None, dict[str, Any]]]:
    """Trial name -> (None or the one-line cause of its failure, the trial's Tune config), from
    a `ResultGrid`."""
    outcomes = {}
    for result in grid:
        name = Path(result.path).name if result.path else str(result.config.get("trial"))
        err = result.error
        outcomes[name] = (None if err is None else describe_failure(err, sweep_dir, name),
                          dict(result.config or {}))
    return outcomes


# Tune's own console output, replaced by `ConsoleLines` (a user's own setting wins): the legacy
# output engine, which `verbose=0` silences (the new one prints its experiment table, result
# folders and a paragraph per failed trial whatever the verbosity), and no `Trial task failed`
# record with the whole Ray traceback (the trial's error file keeps it)
TUNE_CONSOLE_OPTIONS = {"RAY_AIR_NEW_OUTPUT": "0", "TUNE_PRINT_ALL_TRIAL_ERRORS": "0"}


class _NoIncompleteList:
    """A logging filter for Tune's `Trials did not complete: [...]` line: the sweep's summary
    lists each failed trial with its cause."""

    @staticmethod
    def filter(record) -> bool:
        return not str(record.msg).startswith("Trials did not complete")


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
