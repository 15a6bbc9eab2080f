"""The Tune callbacks of a sweep's driver process: `TrialRuns` opens each trial's MLflow run when
Tune starts it, `ConsoleLines` prints a short line per trial epoch, end and failure in place of
Tune's own tables; and reading a finished Tune run's outcomes (`trial_outcomes`)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from mlflow import MlflowClient

from dear_ray.config import load_config
from dear_ray.train.bad_videos import describe_failure


class TrialRuns:
    """A Tune callback owning the trials' MLflow runs, in the sweep's driver process.

    When Tune starts a trial (before its function runs), its run is opened, or continued when it
    exists under the parent run (a resumed or retried trial): tags, params and the resolved
    config are logged (`dear_ray.train.driver.open_trial_run`), so the run's start time is the
    trial's. When the trial completes, its run ends FINISHED if the trial's last report says its
    evaluation is done (`DONE_KEY`); others are left to `close_child_runs` after the fit (an
    error: FAILED; stopped by the scheduler: KILLED). In a sweep with stages, each run gets a
    `stage` tag and, for a trial started from an earlier stage's trial, that trial
    (`pretrained_trial` tag) and its checkpoint (`pretrained_from` param).
    """

    def __new__(cls, trial_configs: dict[str, dict], tracking_uri: str, parent_run_id: str,
                experiment: str, stages: dict[str, tuple[str, str | None]] | None = None):
        from ray import tune

        from dear_ray.train.driver import DONE_KEY, open_trial_run

        stages = stages or {}

        class _Runs(tune.Callback):
            def __init__(self) -> None:
                self.run_ids: dict[str, str] = {}

            def on_trial_start(self, iteration, trials, trial, **info):
                name = trial_name(trial)
                cfg = load_config(trial_configs[trial.config["trial"]],
                                  overrides=trial.config.get("search") or None)
                logger = open_trial_run(cfg.override({"tracking.uri": tracking_uri}), name,
                                        experiment=experiment, parent_run_id=parent_run_id)
                self.run_ids[name] = logger.run_id
                stage, source = stages.get(trial.config["trial"], ("", None))
                if stage:
                    client = MlflowClient(tracking_uri)
                    client.set_tag(logger.run_id, "stage", stage)
                    if source:
                        client.set_tag(logger.run_id, "pretrained_trial", source)
                        client.log_param(logger.run_id, "pretrained_from", cfg.model.pretrained)

            def on_trial_complete(self, iteration, trials, trial, **info):
                run_id = self.run_ids.get(trial_name(trial))
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


def trial_name(trial) -> str:
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
                return trial_name(trial)

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


def trial_outcomes(grid, sweep_dir: Path) -> dict[str, tuple[str | None, dict[str, Any]]]:
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


class NoIncompleteList:
    """A logging filter for Tune's `Trials did not complete: [...]` line: the sweep's summary
    lists each failed trial with its cause."""

    @staticmethod
    def filter(record) -> bool:
        return not str(record.msg).startswith("Trials did not complete")
