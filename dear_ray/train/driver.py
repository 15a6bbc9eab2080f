"""Ray Train in two levels: `train_fn_per_worker` on each worker (`dear_ray.train.worker`, where
it runs: `dear_ray.train.session`), `run_training` here builds the trainer and owns the MLflow run.

`run_training(cfg)` is one training run without Tune (`dear-ray train CONFIG.yaml`); a Tune sweep
calls it from its trial driver function (`dear_ray.tune.runner`). Layout under
`<tracking.run_dir>/<name>/`: `ray/<trial>/` is the Train run's storage (checkpoints, each with
the resolved `config.yaml`), `configs/<trial>.yaml` the resolved config (also an MLflow artifact),
and `stores/<trial>/<split>.parquet` the score stores written after training. The evaluation
itself lives in `dear_ray.train.evaluation`: every worker scores a shard of each split, rank 0
gathers and writes the stores.

`model.pretrained` is checked in the driver before any worker starts (the model built on the meta
device, `dear_ray.train.eval_run.check_pretrained`): a shape mismatch, and with `eval_only` any
missing or unexpected tensor, fails the run naming the keys.

With `resources.num_workers: 0` the same loop runs in the calling process, without a Ray Train
worker group (`dear-ray train`, or a sweep's Tune trial, whose reports then go to Tune); its
checkpoints stay in `ray/<trial>/` and a rerun resumes after the last complete one.

Per epoch every worker calls `ray.train.report` exactly once; rank 0 attaches a checkpoint every
`checkpoint.every_n_epochs` epochs and at the last one. The last epoch's report comes after the
final evaluation, so `Result.metrics` carries the test accuracies too. With `eval_only` the
workers load `model.pretrained`, evaluate, and report once without a checkpoint (the returned
metrics are then read back from the MLflow run).

MLflow: the driver opens (or finds) the trial's run (`dear_ray.tracking.trial_run`); rank 0 logs.
"""

from __future__ import annotations

from typing import Any

from dear_ray.config import ExperimentConfig
from dear_ray.timeline import mark
from dear_ray.tracking.trial_run import end_failed_run, experiment_of, open_trial_run
from dear_ray.train.session import (
    CHECKPOINT_PREFIX,
    InProcessSession,
    latest_local_checkpoint,
    set_ray_train_options,
)
from dear_ray.train.worker import DONE_KEY, RUN_ID_KEY, train_fn_per_worker

# torch, the data, model and evaluation code are imported inside the functions that use them: a
# sweep's trial driver (`run_training`) then imports only Ray Train and torch (no metrics stack,
# no MLflow when the sweep opened the run), which is part of every trial's fixed start-up cost


def run_training(cfg: ExperimentConfig, *, trial_name: str | None = None,
                 parent_run_id: str | None = None, callbacks=(),
                 opened_run: tuple[str, str] | None = None,
                 tune_trial: bool = False) -> dict[str, Any]:
    """Train one model with Ray Train, score every evaluation split, log to MLflow.

    Args:
        cfg: the validated config.
        trial_name: the Train run's and MLflow run's name (default: `cfg.name`).
        parent_run_id: the sweep's MLflow parent run; the trial's child run is found by name
            under it (the sweep driver creates it).
        callbacks: Ray Train `UserCallback`s (a sweep passes `TuneReportCallback`).
        opened_run: `(run id, experiment name)` of the trial's run when the caller (the sweep
            driver, `dear_ray.tune.runner`) already opened it, logged its params and config and
            checked `model.pretrained` (preflight): this process then neither checks nor touches
            MLflow, only the workers log into the run, and the caller closes it. Importing MLflow
            and opening its SQLite store costs a fresh process 2-3 s, which every trial paid
            twice (here and in rank 0). The run id may be None: rank 0 then finds the run by
            `trial_name` under `parent_run_id`.
        tune_trial: this process is a Tune trial (the sweep's trial driver): with
            `resources.num_workers: 0` every epoch is reported to Tune from here
            (`InProcessSession`; Ray refuses `ray.train.report` inside a Tune function).

    Returns:
        The last report's metrics plus `run_id` (MLflow), `checkpoint` (path of the last
        checkpoint), `stores` (folder of the score stores) and `trial_name`.

    Raises:
        CheckpointError: `model.pretrained` does not fit the model (with `eval_only`: does not
            provide exactly its tensors), before anything else.
        TrackingError: the tracking server is unreachable (before training starts).
        ray.train.TrainingFailedError: training failed more than `resources.max_failures` times.
    """
    trial_name = trial_name or cfg.name
    mark(cfg.run_root(), trial_name, "mlflow_run_open_start")
    if opened_run is None:
        logger = _open_run(cfg, trial_name, parent_run_id)
        run_id, experiment, cfg = logger.run_id, logger.experiment, logger.cfg
    else:
        logger = None
        run_id, experiment = opened_run
    mark(cfg.run_root(), trial_name, "mlflow_run_ready")
    loop_config = {"config": cfg.to_dict(), "trial_name": trial_name,
                   "parent_run_id": parent_run_id, "run_id": run_id, "experiment": experiment}
    if cfg.resources.num_workers == 0:  # the loop runs right here (`InProcessSession`)
        fit = _in_process_fit(cfg, loop_config, callbacks=callbacks, tune_trial=tune_trial)
    else:
        fit = _worker_group_fit(cfg, loop_config, callbacks=callbacks)
    mark(cfg.run_root(), trial_name, "train_fit_start")
    try:
        metrics, checkpoint = fit()
    except BaseException as err:
        if logger is not None:
            end_failed_run(logger, err, cfg, trial_name)
        raise
    mark(cfg.run_root(), trial_name, "train_fit_done")
    return _finished(cfg, logger, metrics, checkpoint, run_id=run_id, trial_name=trial_name)


def _finished(cfg: ExperimentConfig, logger, metrics: dict | None, checkpoint: str | None, *,
              run_id: str, trial_name: str) -> dict[str, Any]:
    """Close the run this process opened (FINISHED) and assemble `run_training`'s result."""
    from dear_ray.train.evaluation import stores_dir

    out = dict(metrics or {})
    if logger is not None:
        logger.set_terminated("FINISHED")
        if cfg.eval_only:  # no checkpoint attached, so no Result.metrics: the run has them
            out.update(logger._client.get_run(run_id).data.metrics)
    if cfg.eval_only:
        checkpoint = cfg.model.pretrained
    out.update(run_id=run_id, trial_name=trial_name, checkpoint=checkpoint,
               stores=str(stores_dir(cfg, trial_name)))
    return out


def _in_process_fit(cfg: ExperimentConfig, loop_config: dict[str, Any], *, callbacks,
                    tune_trial: bool):
    """`fit() -> (metrics, checkpoint path)` running the loop in this process."""
    trial_name = loop_config["trial_name"]
    folder = cfg.run_root() / "ray" / trial_name
    folder.mkdir(parents=True, exist_ok=True)  # the name is taken at once
    session = InProcessSession(cfg, callbacks=callbacks, tune=tune_trial)

    def fit() -> tuple[dict | None, str | None]:
        train_fn_per_worker({**loop_config, "session": session})
        last = latest_local_checkpoint(folder)
        return session.last_metrics, last.path if last is not None else None

    return fit


def _worker_group_fit(cfg: ExperimentConfig, loop_config: dict[str, Any], *, callbacks):
    """`fit() -> (metrics, checkpoint path)` running a Ray Train `TorchTrainer` worker group."""
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train import LoggingConfig as TrainLoggingConfig
    from ray.train.torch import TorchTrainer

    res = cfg.resources
    per_worker = {"CPU": res.cpus_per_worker}
    if res.use_gpu:
        per_worker["GPU"] = res.gpus_per_worker
    trainer = TorchTrainer(
        train_fn_per_worker,
        train_loop_config=loop_config,
        scaling_config=ScalingConfig(num_workers=res.num_workers, use_gpu=res.use_gpu,
                                     resources_per_worker=per_worker),
        run_config=RunConfig(
            name=loop_config["trial_name"], storage_path=str(cfg.run_root() / "ray"),
            # Ray Train's own INFO lines (worker group start, every report's dict) stay in
            # its log files; the console gets warnings and our one line per epoch
            logging_config=TrainLoggingConfig(log_level="WARNING"),
            failure_config=FailureConfig(max_failures=res.max_failures),
            checkpoint_config=CheckpointConfig(num_to_keep=cfg.checkpoint.num_to_keep),
            callbacks=list(callbacks) or None),
    )

    def fit() -> tuple[dict | None, str | None]:
        result = trainer.fit()
        return result.metrics, result.checkpoint.path if result.checkpoint is not None else None

    return fit


def _open_run(cfg: ExperimentConfig, trial_name: str, parent_run_id: str | None):
    """Check `model.pretrained` and the tracking store, then open (or continue) the trial's run
    and log its params and config; the `TrialLogger`, with `.experiment` and `.cfg` (the config
    with `tracking.uri` resolved) set."""
    from dear_ray.tracking.mlflow_runs import check_tracking_uri, find_run, resolve_tracking_uri
    from dear_ray.train.pretrained import check_pretrained

    check_pretrained(cfg)  # before any worker starts: a wrong file fails here, naming the keys
    tracking_uri = resolve_tracking_uri(cfg)
    check_tracking_uri(tracking_uri)
    cfg = cfg.override({"tracking.uri": tracking_uri})
    experiment = experiment_of(cfg, tracking_uri, parent_run_id)
    run_id = None
    if parent_run_id is None and (cfg.run_root() / "ray" / trial_name).exists():
        # Ray resumes an existing Train run of this name: continue its MLflow run too
        from mlflow import MlflowClient

        exp = MlflowClient(tracking_uri).get_experiment_by_name(experiment)
        if exp is not None:
            run_id = find_run(tracking_uri, exp.experiment_id, run_name=trial_name)
    logger = open_trial_run(cfg, trial_name, experiment=experiment, parent_run_id=parent_run_id,
                            run_id=run_id)
    logger.experiment, logger.cfg = experiment, cfg
    return logger


__all__ = ["CHECKPOINT_PREFIX", "DONE_KEY", "RUN_ID_KEY", "latest_local_checkpoint", "open_trial_run",
           "run_training", "set_ray_train_options", "train_fn_per_worker"]
