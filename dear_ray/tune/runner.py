"""Run a `SweepSpec` with Ray Tune (Train inside Tune), MLflow parent/child runs, then the report.

MLflow: the experiment and the sweep's parent run are created here, in the driver process, before
any trial starts (first-time SQLite creation races). Each trial's child run is opened here too, by
a Tune callback when the trial starts (`_callbacks.TrialRuns`: its start time is the trial's, not
the sweep's), found again by (parent run, trial name) when a trial is resumed, so a resumed trial
never duplicates its run; the trial's rank 0 finds it by that name and logs into it. The trials
run stage by stage (`dear_ray.tune.stage_runner`; a sweep without stages is one stage), each
stage as one Tune run (`dear_ray.tune._tune_fit`).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

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
from dear_ray.tune._state import (  # noqa: F401 - config_diff, format_changes: the CLI's
    TRIALS_FILE,
    changed_trials,
    config_diff,
    format_changes,
    mixed_settings,
    read_trials_state,
    with_source,
)
from dear_ray.tune._tune_fit import TUNE_DIR_NAME, _param_space, _tune_config  # noqa: F401
from dear_ray.tune.stage_runner import StageRun, report_trials, run_stages
from dear_ray.tune.sweep import SweepError, SweepSpec, TrialPlan, expand_trials

log = logging.getLogger(__name__)


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
        skipped: trial name -> why it did not run: the trial it starts from (an earlier stage's)
            failed or left no checkpoint.
        notes: warnings about the table (trials trained under settings the sweep does not vary,
            `mixed_settings`).
        pareto: with `optimize`, every trial's objectives and `on_front` (the Pareto front first,
            `dear_ray.tracking.pareto_report`); None otherwise.
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
    skipped: dict[str, str] = field(default_factory=dict)
    pareto: pd.DataFrame | None = None

    def summary(self) -> str:
        ran = len(self.trials) - len(self.reused)
        in_table = 0 if self.table is None or self.table.empty else self.table["trial"].nunique()
        lines = [f"sweep {self.name}: {ran} trial(s) run now"
                 + (f", {len(self.reused)} reused" if self.reused else "")
                 + f", {len(self.failed)} failed"
                 + (f", {len(self.skipped)} skipped" if self.skipped else "")
                 + f"; the table has {in_table} trial(s); MLflow "
                   f"{self.tracking_uri} parent run {self.parent_run_id}"]
        lines += [f"  FAILED {name}: {err}" for name, err in self.failed.items()]
        lines += [f"  SKIPPED {name}: {why}" for name, why in self.skipped.items()]
        lines += [f"  warning: {note}" for note in self.notes]
        return "\n".join(lines)


def experiment_name(spec: SweepSpec) -> str:
    """The sweep's MLflow experiment (`SweepSpec.experiment`): `tracking.experiment` or its name."""
    return spec.experiment


def run_sweep(spec: SweepSpec, *, resume: bool = False, restart_changed: bool = False
              ) -> SweepResult:
    """Run the sweep with Ray Tune (Train inside Tune), log it to MLflow, then aggregate.

    Local Ray is started (and stopped) unless a cluster address is given (`ray.address`,
    `RAY_ADDRESS`) or Ray is already initialised. Failed trials do not stop the sweep: they are
    listed in the result, their MLflow runs end FAILED, and the finished trials are aggregated;
    a trial that starts from a failed one is skipped (`SweepResult.skipped`). Resuming works per
    trial, from `<sweep_dir>/trials.json` (each trial's resolved config, written when its stage
    starts): a trial whose MLflow child run FINISHED is reused; a new trial, an unfinished one (its
    Train run continues from its last checkpoint) and a failed one run again. A trial whose
    resolved config differs from the recorded one, or that starts from such a trial, is refused
    with the diff unless `restart_changed`, which starts it over (its checkpoints and stores are
    deleted, its old MLflow run is kept, renamed `<trial> (replaced ...)`).

    Raises:
        TrackingError: the tracking store is unusable (before anything starts).
        SweepError: the sweep already ran and `resume` is False; or a trial's config changed.
        PreflightError: a data, checkpoint or run-dir problem found before Ray starts.
    """
    from dear_ray.train.preflight import preflight

    clock = time.perf_counter()
    timings: dict[str, float] = {}
    plans = expand_trials(spec)
    if resume and spec.optimize is not None:
        raise SweepError(f"{spec.source}: --resume: a sweep with optimize cannot be resumed (Optuna's "
                         "study lives in the interrupted Tune run); run it again as a separate sweep "
                         f"with --set tracking.run_dir=<another folder> (e.g. {_other_run_dir(spec)}); "
                         "the finished trials' stores and MLflow runs stay where they are")
    tracking_uri = resolve_tracking_uri(spec.base)
    check_tracking_uri(tracking_uri)
    preflight([p.config for p in plans], tracking_uri=tracking_uri)
    if not resume and ((spec.sweep_dir / "ray" / TUNE_DIR_NAME).exists()
                       or (spec.sweep_dir / TRIALS_FILE).exists()):
        raise SweepError(f"{spec.source}: sweep {spec.name!r} already has results in "
                         f"{spec.sweep_dir}; continue it with --resume, run this as a separate "
                         "sweep with --set tracking.run_dir=<another folder> (e.g. "
                         f"{_other_run_dir(spec)}), or delete that folder to start over")
    # every trial gets the resolved URI, so workers need no environment variable
    trial_configs = {p.name: p.config.override({"tracking.uri": tracking_uri}).to_dict()
                     for p in plans}
    recorded = read_trials_state(spec.sweep_dir / TRIALS_FILE) if resume else {}
    changed = changed_trials(plans, recorded, trial_configs, spec.sweep_dir)
    if changed and not restart_changed:
        raise SweepError(f"{spec.source}: --resume: the resolved config of {len(changed)} trial(s) "
                         "changed since they ran:\n" + format_changes(changed) + "\nrestore the "
                         "old settings, pass --restart-changed to train those trials again from "
                         "scratch (their old MLflow runs are kept, marked replaced), or run the "
                         "new settings as a separate sweep with --set tracking.run_dir=<another "
                         f"folder> (e.g. {_other_run_dir(spec)}), without --resume")
    run = _open_runs(spec, plans, trial_configs, tracking_uri, resume=resume, changed=changed)
    timings["setup_s"] = time.perf_counter() - clock
    try:
        run_stages(run, plans, timings)
    except BaseException:
        MlflowClient(tracking_uri).set_terminated(run.parent_run_id, status="KILLED")
        raise
    return _report(run, plans, timings)


def execute_sweep(spec: SweepSpec, *, resume: bool = False,
                  restart_changed: bool = False) -> SweepResult:
    """`run_sweep` (its earlier name)."""
    return run_sweep(spec, resume=resume, restart_changed=restart_changed)


def _open_runs(spec: SweepSpec, plans: list[TrialPlan], trial_configs: dict[str, dict],
               tracking_uri: str, *, resume: bool, changed: dict[str, list[str]]) -> StageRun:
    """The experiment and the parent run; changed trials replaced, finished ones reused."""
    experiment = experiment_name(spec)
    experiment_id = ensure_experiment(
        tracking_uri, experiment,
        artifact_location=artifact_location_for(tracking_uri, spec.base.tracking.run_dir))
    parent_run_id = start_parent_run(tracking_uri, experiment_id, sweep=spec.name, resume=resume)
    client = MlflowClient(tracking_uri)
    for name, diff in changed.items():
        why = diff[-1] if diff[-1].startswith("it starts from") else "its config changed"
        _replace_trial(client, tracking_uri, experiment_id, parent_run_id, spec.sweep_dir, name,
                       why)
    reused = [] if not resume else [
        name for name in trial_configs if name not in changed and _finished(
            client, tracking_uri, experiment_id, parent_run_id, name)]
    _log_sweep_to_parent(tracking_uri, parent_run_id, spec, plans)
    if reused:
        print(f"reusing {len(reused)} finished trial(s) of an earlier run: {', '.join(reused)} "
              f"(delete {spec.sweep_dir} to start over)", flush=True)
    return StageRun(spec, trial_configs, tracking_uri, experiment_id, parent_run_id, experiment,
                    reused)


def _report(run: StageRun, plans: list[TrialPlan], timings: dict[str, float]) -> SweepResult:
    """Close the trials' runs, aggregate the report's trials and end the parent run."""
    from dear_ray.tracking.aggregate import report_sweep

    spec, clock = run.spec, time.perf_counter()
    failed = {name: err for name, (err, _) in run.outcomes.items() if err is not None}
    _close_child_runs(run.tracking_uri, run.experiment_id, run.parent_run_id, run.outcomes,
                      run.trial_configs)
    notes = sweep_notes(spec)
    for note in notes:
        print(f"warning: {note}", flush=True)
    table = report_sweep(spec.sweep_dir, tracking_uri=run.tracking_uri, experiment=run.experiment,
                         protocol=spec.base.eval.protocol, notes=notes,
                         trials=report_trials(spec, plans), **spec.base.eval.report_options())
    pareto = _report_pareto(run) if spec.optimize is not None else None
    client = MlflowClient(run.tracking_uri)
    client.log_metric(run.parent_run_id, "failed_trials", float(len(failed)))
    if run.skipped:
        client.log_metric(run.parent_run_id, "skipped_trials", float(len(run.skipped)))
    client.set_terminated(run.parent_run_id,
                          status="FAILED" if failed or run.skipped else "FINISHED")
    timings["report_s"] = time.perf_counter() - clock
    result = SweepResult(spec.name, spec.sweep_dir, run.tracking_uri, run.experiment_id,
                         run.parent_run_id, table, failed,
                         sorted(set(run.outcomes) | set(run.reused)), timings,
                         reused=run.reused, notes=notes, skipped=dict(run.skipped),
                         pareto=pareto)
    log.info(result.summary())
    return result


def _report_pareto(run: StageRun) -> pd.DataFrame:
    """The Pareto front of an optimize sweep's trials, logged to the parent run; one console line."""
    from dear_ray.tracking.pareto_report import PARETO_DIR, report_pareto

    spec = run.spec
    front = report_pareto(spec.sweep_dir, spec.optimize.objectives, tracking_uri=run.tracking_uri,
                          experiment=run.experiment, trials=set(run.outcomes))
    if not front.empty:
        names = ", ".join(front.loc[front["on_front"], "trial"])
        print(f"Pareto front ({', '.join(spec.optimize.objectives)}): "
              f"{int(front['on_front'].sum())} of {len(front)} trial(s): {names} "
              f"({spec.sweep_dir / 'report' / PARETO_DIR})", flush=True)
    return front


def _other_run_dir(spec: SweepSpec) -> str:
    """A run folder beside the sweep's own, for a variant of it (`runs/demo_2`)."""
    run_dir = Path(spec.base.tracking.run_dir)
    n = 2
    while (run_dir.with_name(f"{run_dir.name}_{n}") / spec.name).exists():
        n += 1
    return str(run_dir.with_name(f"{run_dir.name}_{n}"))


def sweep_notes(spec: SweepSpec) -> list[str]:
    """Warnings about the sweep's table: the trials with score stores (those of its report,
    `stage_runner.report_trials`) that were trained under settings the sweep gives them all
    alike (`mixed_settings`, from `trials.json`)."""
    from dear_ray.tracking.aggregate import find_trial_stores

    plans = expand_trials(replace(spec, only=()))
    expected = {p.name: with_source(p.config.to_dict(), p.source, spec.sweep_dir) for p in plans}
    recorded = {name: with_source(config, next((p.source for p in plans if p.name == name), None),
                                  spec.sweep_dir)
                for name, config in read_trials_state(spec.sweep_dir / TRIALS_FILE).items()}
    shown = report_trials(spec, plans)
    trials = [t for t in find_trial_stores(spec.sweep_dir) if shown is None or t in shown]
    return mixed_settings(recorded, expected, trials)


def _finished(client: MlflowClient, tracking_uri: str, experiment_id: str, parent_run_id: str,
              trial: str) -> bool:
    run_id = find_run(tracking_uri, experiment_id, run_name=trial, parent_run_id=parent_run_id)
    return run_id is not None and client.get_run(run_id).info.status == "FINISHED"


def _replace_trial(client: MlflowClient, tracking_uri: str, experiment_id: str,
                   parent_run_id: str, sweep_dir: Path, trial: str, why: str) -> None:
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
    print(f"restarting trial {trial} from scratch ({why})", flush=True)


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
