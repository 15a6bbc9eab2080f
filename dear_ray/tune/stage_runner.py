"""Run a sweep's trials stage by stage: a sweep without stages is one stage.

Stages run in file order, each as one Tune run of its trials (in parallel, `_tune_fit.tune_fit`),
all under the sweep's one MLflow parent run and one Ray connection. When a stage starts, each of
its trials that starts from an earlier stage's trial (`TrialPlan.source`) gets that trial's last
complete checkpoint (`<sweep_dir>/ray/<trial>/checkpoint_epoch_*`) as `model.pretrained`; a trial
whose source failed, was skipped or left no checkpoint is skipped, with one console line.
docs/sweeps.md.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from dear_ray.config import load_config
from dear_ray.tune._callbacks import TrialRuns
from dear_ray.tune._state import TRIALS_FILE, read_trials_state, write_trials_state
from dear_ray.tune._tune_fit import ray_session, tune_fit
from dear_ray.tune.sweep import SweepSpec, TrialPlan


@dataclass
class StageRun:
    """What the stages share: the resolved trial configs (`trial_configs`, completed with each
    dependant's checkpoint when its stage starts), the MLflow parent run, the trials an earlier
    run finished (`reused`); and what they produce (`outcomes`, `skipped`)."""

    spec: SweepSpec
    trial_configs: dict[str, dict]
    tracking_uri: str
    experiment_id: str
    parent_run_id: str
    experiment: str
    reused: list[str]
    outcomes: dict[str, tuple[str | None, dict]] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)


def stage_names(plans: list[TrialPlan]) -> list[str]:
    """The stages of `plans` in run order (`[""]`: a sweep without stages)."""
    return list(dict.fromkeys(p.stage for p in plans))


def report_trials(spec: SweepSpec, plans: list[TrialPlan]) -> list[str] | None:
    """The trials the sweep's report covers: the last stage's (an earlier stage pretrains, often
    on another data set: its trials are not rows of the open-set table); None: every trial (a
    sweep without stages)."""
    if not spec.stages:
        return None
    last = spec.stages[-1].name
    return [p.name for p in plans if p.stage == last]


def last_checkpoint(sweep_dir: Path, trial: str) -> Path | None:
    """A trial's last complete checkpoint folder (`checkpoint_epoch_<n>` with its state file)."""
    from dear_ray.train.checkpointing import STATE_FILE
    from dear_ray.train.driver import CHECKPOINT_PREFIX

    folder = Path(sweep_dir) / "ray" / trial
    found = sorted(p for p in folder.glob(f"{CHECKPOINT_PREFIX}[0-9]*")
                   if p.name[len(CHECKPOINT_PREFIX):].isdigit() and (p / STATE_FILE).is_file())
    return found[-1].absolute() if found else None


def run_stages(run: StageRun, plans: list[TrialPlan], timings: dict[str, float]) -> None:
    """Every stage of `plans` in order, filling `run.outcomes` and `run.skipped`."""
    to_run = [p for p in plans if p.name not in run.reused]
    if not to_run:
        return
    clock = time.perf_counter()
    with ray_session(run.spec, timings):
        fit_clock = time.perf_counter()
        for stage in stage_names(plans):
            stage_plans = _ready(run, [p for p in to_run if p.stage == stage])
            if stage_plans:
                _run_stage(run, stage, stage_plans, timings)
        timings["tune_fit_s"] = time.perf_counter() - fit_clock
    timings.setdefault("ray_init_s", time.perf_counter() - clock)


def _ready(run: StageRun, plans: list[TrialPlan]) -> list[TrialPlan]:
    """The plans whose source is there, their checkpoint filled in; the others skipped."""
    from dear_ray.train.preflight import preflight

    ready = []
    for plan in plans:
        if plan.source is None:
            ready.append(plan)
            continue
        source = plan.source.split("/")[1]
        checkpoint = last_checkpoint(run.spec.sweep_dir, source)
        if source in run.skipped or run.outcomes.get(source, (None,))[0] is not None \
                or checkpoint is None:
            why = ("was skipped" if source in run.skipped else "failed"
                   if source in run.outcomes and run.outcomes[source][0] is not None
                   else "left no checkpoint")
            run.skipped[plan.name] = f"its source {plan.source} {why}"
            print(f"[{plan.name}] SKIPPED: it starts from {plan.source}, which {why}", flush=True)
            continue
        config = load_config(run.trial_configs[plan.name],
                             overrides={"model.pretrained": str(checkpoint)})
        run.trial_configs[plan.name] = config.to_dict()
        ready.append(plan)
    sourced = [load_config(run.trial_configs[p.name]) for p in ready if p.source]
    if sourced:  # the checkpoint fits the trial's model (a clear error before the stage starts)
        preflight(sourced, tracking_uri=run.tracking_uri)
    return ready


def _run_stage(run: StageRun, stage: str, plans: list[TrialPlan],
               timings: dict[str, float]) -> None:
    spec = run.spec
    state = spec.sweep_dir / TRIALS_FILE
    write_trials_state(state, {**read_trials_state(state),
                               **{p.name: run.trial_configs[p.name] for p in plans}})
    limit = None
    if stage:
        limit = next(s.max_concurrent_trials for s in spec.stages if s.name == stage)
        print(f"stage {stage}: {len(plans)} trial(s): " + ", ".join(
            p.name + (f" (from {p.source})" if p.source else "") for p in plans), flush=True)
    runs = TrialRuns(run.trial_configs, run.tracking_uri, run.parent_run_id, run.experiment,
                     stages={p.name: (p.stage, p.source) for p in plans})
    clock = time.perf_counter()
    run.outcomes.update(tune_fit(spec, plans, run.trial_configs, runs,
                                 parent_run_id=run.parent_run_id, experiment=run.experiment,
                                 max_concurrent=limit))
    if stage:
        timings[f"stage_{stage}_s"] = time.perf_counter() - clock
