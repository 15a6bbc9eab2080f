"""Ray Train in two levels: `train_fn_per_worker` on each worker, `run_training` builds the trainer.

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

MLflow: the driver opens (or, in a sweep, finds) the trial's run before training; rank 0 logs into
it by run id (also stored in each checkpoint), one step per epoch. A restarted worker group resumes
after the last checkpoint Ray registered, which may be older than the last epoch logged (a worker
dying right after a report); rank 0 therefore skips epochs the run already has, so the history
has every epoch exactly once.
"""

from __future__ import annotations

import logging
import os
import random
import shutil
import tempfile
from typing import Any

from pathlib import Path

from dear_ray.config import ExperimentConfig, load_config, save_config
from dear_ray.timeline import mark

# torch, the data, model and evaluation code are imported inside the functions that use them: a
# sweep's trial driver (`run_training`) then imports only Ray Train and torch (no metrics stack,
# no MLflow when the sweep opened the run), which is part of every trial's fixed start-up cost

log = logging.getLogger(__name__)
RUN_ID_KEY = "mlflow_run_id"
DONE_KEY = "trial_done"  # 1 in the last report of a run that trained (if any) and evaluated
# Ray Train options for every run with a worker group (environment variables Ray Train reads in
# the process that builds the trainer and propagates to its controller and workers; set unless
# the user set them, `set_ray_train_options`):
# - the controller polls the workers every 2 s by default; a run's end (and each start phase)
#   waits for the next poll, so 0.5 s shortens every run by about a second;
# - the Prometheus metrics callbacks and the spot-preemption watcher cost each run's start-up a
#   little and serve only multi-node Ray dashboards / preemptible nodes (the watcher's actor also
#   logs a core-worker error line about its constructor arguments at every start).
RAY_TRAIN_OPTIONS = {
    "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": "0.5",
    "RAY_TRAIN_METRICS_ENABLED": "0",
    "RAY_TRAIN_ENABLE_PREEMPTION_WATCHER": "0",
}


def set_ray_train_options() -> None:
    """Put `RAY_TRAIN_OPTIONS` into this process's environment (a value already set wins); call
    it before Ray starts, so every Ray process inherits them."""
    for key, value in RAY_TRAIN_OPTIONS.items():
        os.environ.setdefault(key, value)


# --------------------------------------------------------------------------------------------
# driver


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
            (`_InProcessSession`; Ray refuses `ray.train.report` inside a Tune function).

    Returns:
        The last report's metrics plus `run_id` (MLflow), `checkpoint` (path of the last
        checkpoint), `stores` (folder of the score stores) and `trial_name`.

    Raises:
        CheckpointError: `model.pretrained` does not fit the model (with `eval_only`: does not
            provide exactly its tensors), before anything else.
        TrackingError: the tracking server is unreachable (before training starts).
        ray.train.TrainingFailedError: training failed more than `resources.max_failures` times.
    """
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train import LoggingConfig as TrainLoggingConfig
    from ray.train.torch import TorchTrainer

    from dear_ray.train.evaluation import stores_dir

    trial_name = trial_name or cfg.name
    mark(cfg.run_root(), trial_name, "mlflow_run_open_start")
    if opened_run is None:
        logger = _open_run(cfg, trial_name, parent_run_id)
        run_id, experiment, cfg = logger.run_id, logger.experiment, logger.cfg
    else:
        logger = None
        run_id, experiment = opened_run
    resolved = cfg.to_dict()
    mark(cfg.run_root(), trial_name, "mlflow_run_ready")
    storage = cfg.run_root() / "ray"
    res = cfg.resources
    loop_config = {"config": resolved, "trial_name": trial_name, "parent_run_id": parent_run_id,
                   "run_id": run_id, "experiment": experiment}
    if res.num_workers == 0:  # the loop runs right here (`_InProcessSession`)
        (storage / trial_name).mkdir(parents=True, exist_ok=True)  # the name is taken at once
        session = _InProcessSession(cfg, callbacks=callbacks, tune=tune_trial)

        def fit() -> tuple[dict | None, str | None]:
            train_fn_per_worker({**loop_config, "session": session})
            last = latest_local_checkpoint(storage / trial_name)
            return session.last_metrics, last.path if last is not None else None
    else:
        per_worker = {"CPU": res.cpus_per_worker}
        if res.use_gpu:
            per_worker["GPU"] = res.gpus_per_worker
        trainer = TorchTrainer(
            train_fn_per_worker,
            train_loop_config=loop_config,
            scaling_config=ScalingConfig(num_workers=res.num_workers, use_gpu=res.use_gpu,
                                         resources_per_worker=per_worker),
            run_config=RunConfig(
                name=trial_name, storage_path=str(storage),
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
    mark(cfg.run_root(), trial_name, "train_fit_start")
    try:
        metrics, checkpoint = fit()
    except BaseException as err:
        if logger is not None:
            _end_failed_run(logger, err, cfg, trial_name)
        raise
    mark(cfg.run_root(), trial_name, "train_fit_done")
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


def _end_failed_run(logger, err: BaseException, cfg: ExperimentConfig, trial: str) -> None:
    """A run that raised ends KILLED when interrupted (Ctrl-C), else FAILED with its one-line
    cause in the tag `error` (`dear_ray.train.bad_videos.describe_failure`)."""
    from dear_ray.train.bad_videos import describe_failure

    if isinstance(err, KeyboardInterrupt):
        logger.set_tags({"error": "interrupted (KeyboardInterrupt)"})
        logger.set_terminated("KILLED")
        return
    logger.set_tags({"error": describe_failure(err, cfg.run_root(), trial)})
    logger.set_terminated("FAILED")


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
    experiment = _experiment_name(cfg, tracking_uri, parent_run_id)
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


def open_trial_run(cfg: ExperimentConfig, trial_name: str, *, experiment: str,
                   parent_run_id: str | None = None, run_id: str | None = None):
    """Open (or continue: `run_id`, or the run of that name under `parent_run_id`) a trial's
    MLflow run in this process and log its tags, params and config file; the `TrialLogger`.
    `cfg.tracking.uri` is the resolved URI. The trial driver calls it for its own run, a sweep's
    driver for all its trials' runs before they start."""
    from dear_ray.tracking.mlflow_runs import TrialLogger, artifact_location_for, run_tags

    resolved = cfg.to_dict()
    logger = TrialLogger(cfg.tracking.uri, experiment, run_name=trial_name,
                         parent_run_id=parent_run_id, run_id=run_id,
                         tags=run_tags(resolved, sweep=cfg.name, trial=trial_name),
                         artifact_location=artifact_location_for(cfg.tracking.uri,
                                                                 cfg.tracking.run_dir))
    try:
        logger.log_params(resolved)
        config_file = save_config(cfg, cfg.run_root() / "configs" / f"{trial_name}.yaml")
        logger.log_artifact(config_file, artifact_path="config")
    except BaseException as err:  # e.g. a changed param: the run must not stay RUNNING
        _end_failed_run(logger, err, cfg, trial_name)
        raise
    return logger


def _experiment_name(cfg: ExperimentConfig, tracking_uri: str, parent_run_id: str | None) -> str:
    """The parent run's experiment in a sweep, else `cfg.experiment_name()`."""
    if parent_run_id is None:
        return cfg.experiment_name()
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri)
    experiment_id = client.get_run(parent_run_id).info.experiment_id
    return client.get_experiment(experiment_id).name


# --------------------------------------------------------------------------------------------
# worker


def train_fn_per_worker(loop_config: dict[str, Any]) -> dict[str, Any] | None:
    """The Ray Train loop of one worker; everything it uses comes in `loop_config`.

    Keys: `config` (the resolved config dict, `tracking.uri` set), `trial_name`, `parent_run_id`,
    `run_id` (MLflow run to log into), `experiment`, and, when `run_training` runs the loop in its
    own process (`num_workers: 0`), `session` (`_InProcessSession`). Returns the last report's
    metrics.
    """
    cfg_dict, trial = loop_config["config"], loop_config["trial_name"]
    run_root = Path(cfg_dict["tracking"]["run_dir"]) / cfg_dict["name"]
    mark(run_root, trial, "worker_start")
    import torch

    from dear_ray.data.dataset import BadVideoReport, TooManyBadVideosError
    from dear_ray.losses import annealing_coefficient
    from dear_ray.models import build_recognizer
    from dear_ray.models import load_checkpoint as load_pretrained
    from dear_ray.train.data import (
        build_masked_loader,
        build_train_loader,
        load_side_inputs,
        num_known_classes,
    )
    from dear_ray.train.bad_videos import append_bad_videos, bad_videos_dir
    from dear_ray.train.checkpointing import load_checkpoint
    from dear_ray.train.evaluation import evaluate_splits, validate
    from dear_ray.train.loop import TrainingStep, to_channels_last_3d, train_one_epoch
    from dear_ray.train.optim import build_optimizer, build_scheduler

    cfg = load_config(cfg_dict)
    session = _session_for(loop_config)
    rank, world = session.rank_world()
    mark(run_root, trial, "worker_imports_done", rank=rank)
    # rank 0 opens its MLflow logger in a thread while the model and loaders are built (a fresh
    # process spends ~2.5 s importing MLflow and opening its store); joined before the first log
    opening = None
    if rank == 0 and _has_run(loop_config):
        from concurrent.futures import ThreadPoolExecutor

        pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mlflow-open")
        opening = pool.submit(_open_worker_logger, cfg, loop_config, loop_config.get("run_id"))
        pool.shutdown(wait=False)
    _seed_everything(cfg.seed + 1000 * rank)
    device = session.device()
    on_gpu = device.type == "cuda"
    if on_gpu:
        torch.backends.cudnn.benchmark = cfg.resources.cudnn_benchmark
    amp = cfg.resources.amp and on_gpu
    layout = cfg.resources.channels_last_3d  # "gpu": on GPU workers only
    channels_last = layout is True or (layout == "gpu" and on_gpu)

    num_classes = num_known_classes(cfg.data)
    m = cfg.model
    model = build_recognizer(num_classes=num_classes, **m.recognizer_options())
    new_parameters = None  # nothing pretrained: every parameter is new
    if m.pretrained:
        loaded = load_pretrained(model, m.pretrained, complete=cfg.eval_only)
        if rank == 0:
            log.info("%s", loaded)
        new_parameters = set(loaded.missing) | set(loaded.skipped_classifier)
    if channels_last:
        model = to_channels_last_3d(model)
    if cfg.eval_only:
        _evaluate_only(model.to(device), cfg, loop_config, session, rank=rank,
                       num_classes=num_classes, device=device, amp=amp)
        return session.last_metrics
    mark(run_root, trial, "worker_model_built", rank=rank)
    side_inputs = load_side_inputs(cfg.data, m.head_options.get("scene_labels", "soft"))
    # on a GPU the loader hands uint8 clips over and the step normalises them on the device
    # (dear_ray.train.data: the same numbers as the CPU path); on a CPU float clips are cheaper
    handover = "uint8" if on_gpu else "float"
    train_loader, dist_sampler = build_train_loader(
        cfg, num_classes=num_classes, rank=rank, world_size=world, side_inputs=side_inputs,
        handover=handover, pin_memory=on_gpu)
    # SDN's separate mask step: an independent loader of masked clips (None otherwise)
    masked_loader, masked_sampler = build_masked_loader(
        cfg, num_classes=num_classes, rank=rank, world_size=world, side_inputs=side_inputs,
        handover=handover, pin_memory=on_gpu)
    dataset, generator = train_loader.dataset, train_loader.generator
    shard_size = len(dist_sampler) if dist_sampler is not None else len(dataset)
    iters_per_epoch = len(train_loader)
    if masked_loader is not None:
        iters_per_epoch = min(iters_per_epoch, len(masked_loader))  # SDN zips the two loaders
        masked_dataset, masked_generator = masked_loader.dataset, masked_loader.generator
        masked_loader = session.prepare_loader(masked_loader)
    train_loader = session.prepare_loader(train_loader)
    step_module = session.prepare_model(TrainingStep(model))
    optimizer = build_optimizer(model, cfg.optim, new_parameters)
    scheduler = build_scheduler(optimizer, cfg.optim, iters_per_epoch)

    start_epoch, global_step, run_id = 0, 0, loop_config.get("run_id")
    last_val: float | None = None
    checkpoint = session.checkpoint(cfg.run_root() / "ray" / trial)
    if checkpoint is not None:
        with checkpoint.as_directory() as directory:
            state = load_checkpoint(directory, model=model, optimizer=optimizer,
                                    scheduler=scheduler, restore_rng=rank == 0,
                                    map_location=device)
        start_epoch, global_step = state.epoch + 1, state.global_step
        run_id = state.extra.get(RUN_ID_KEY) or run_id
        last_val = state.extra.get("val_top1")
        if rank != 0:
            _seed_everything(cfg.seed + 1000 * rank + start_epoch)
        log.info("rank %d resumes %s at epoch %d (step %d)", rank, trial, start_epoch, global_step)

    mark(run_root, trial, "worker_loaders_built", rank=rank)
    logger, logged_through = None, -1
    # rank 0's logger: joined after the first epoch
    pending = rank == 0 and (run_id is not None or _has_run(loop_config))

    def join_logger():
        nonlocal logger, logged_through, pending, run_id
        if not pending:
            return
        pending = False
        logger, logged_through = opening.result() if opening is not None else (None, -1)
        if logger is None or (run_id is not None and logger.run_id != run_id):
            # the checkpoint names another run
            logger, logged_through = _open_worker_logger(cfg, loop_config, run_id)
        run_id = logger.run_id
        if checkpoint is not None:  # a restart: MLflow shows where each one picked up
            logger.log_metrics({"resumed_at_epoch": float(start_epoch)}, step=start_epoch)

    epochs = cfg.optim.epochs
    mark(run_root, trial, "worker_ready", rank=rank)
    for epoch in range(start_epoch, epochs):
        _maybe_fail(cfg, trial, epoch, rank)
        dataset.set_epoch(epoch)
        generator.manual_seed(cfg.seed * 100_003 + epoch)
        if dist_sampler is not None:
            dist_sampler.set_epoch(epoch)
        if masked_loader is not None:
            masked_dataset.set_epoch(epoch)
            masked_generator.manual_seed(cfg.seed * 100_003 + epoch + 1)
            if masked_sampler is not None:
                masked_sampler.set_epoch(epoch)
        anneal = annealing_coefficient(epoch, epochs)
        report = BadVideoReport(shard_size, cfg.data.max_bad_fraction, name=f"train (rank {rank})")
        bad_list = bad_videos_dir(cfg.run_root(), trial) / f"train_rank{rank}.csv"
        try:
            result = train_one_epoch(step_module, train_loader, optimizer, scheduler, epoch=epoch,
                                     anneal=anneal, global_step=global_step, device=device,
                                     grad_clip=cfg.optim.grad_clip, amp=amp,
                                     channels_last=channels_last, bad_report=report,
                                     masked_loader=masked_loader,
                                     check_every_n_steps=cfg.resources.check_every_n_steps)
        except TooManyBadVideosError:  # the list the error message points to
            append_bad_videos(bad_list, report.bad, split="train", epoch=epoch, rank=rank)
            raise
        append_bad_videos(bad_list, report.bad, split="train", epoch=epoch, rank=rank)
        join_logger()
        global_step = result.global_step
        metrics = _epoch_metrics(result.metrics, epoch=epoch, anneal=anneal)
        last = epoch == epochs - 1
        every = cfg.eval.every_n_epochs
        if every and ((epoch + 1) % every == 0 or last):  # every rank: a shard each
            last_val = validate(model, cfg, num_classes, device, amp)
        if rank == 0 and last_val is not None:
            metrics["val_top1"] = last_val
        mark(run_root, trial, "epoch_trained", rank=rank)
        if last:
            metrics.update(evaluate_splits(model, cfg, trial, num_classes, device, amp,
                                           logger=logger))
            _log_bad_videos(logger, cfg, trial)
            mark(run_root, trial, "evaluation_done", rank=rank)
        if logger is not None and epoch > logged_through:
            logger.log_metrics(metrics, step=epoch)
        save = last or (epoch + 1) % cfg.checkpoint.every_n_epochs == 0
        _report({**metrics, DONE_KEY: 1.0} if last else metrics, save=save, rank=rank,
                session=session, cfg=cfg, trial=trial, model=model, optimizer=optimizer,
                scheduler=scheduler, epoch=epoch, global_step=global_step,
                extra={RUN_ID_KEY: run_id, "val_top1": last_val})
        mark(run_root, trial, "epoch_reported", rank=rank)
    if start_epoch >= epochs:  # resumed after the last epoch: only the evaluation is left
        join_logger()
        metrics = {"epoch": epochs - 1}
        metrics.update(evaluate_splits(model, cfg, trial, num_classes, device, amp,
                                       logger=logger))
        session.report({**metrics, DONE_KEY: 1.0})
    return session.last_metrics


def _log_bad_videos(logger, cfg: ExperimentConfig, trial: str) -> None:
    """Rank 0: the run's bad-video lists (`dear_ray.train.bad_videos`) into its artifacts."""
    from dear_ray.train.bad_videos import bad_videos_dir

    folder = bad_videos_dir(cfg.run_root(), trial)
    if logger is not None and folder.is_dir() and any(folder.glob("*.csv")):
        logger.log_artifact(folder, artifact_path="bad_videos")


def _evaluate_only(model, cfg: ExperimentConfig, loop_config: dict[str, Any], session, *,
                   rank: int, num_classes: int, device, amp: bool) -> None:
    """`eval_only`: every rank scores its shards of the evaluation splits; rank 0 writes the
    stores and logs the metrics (step 0) into the run; one report per rank, no checkpoint."""
    from dear_ray.train.evaluation import evaluate_splits

    logger = None
    if rank == 0 and _has_run(loop_config):
        from dear_ray.tracking import TrialLogger

        logger = TrialLogger(cfg.tracking.uri, loop_config["experiment"],
                             run_name=loop_config["trial_name"],
                             parent_run_id=loop_config.get("parent_run_id"),
                             run_id=loop_config.get("run_id"))
    metrics = evaluate_splits(model, cfg, loop_config["trial_name"], num_classes, device, amp,
                              logger=logger)
    if logger is not None:
        logger.log_metrics(metrics, step=0)
    session.report({**metrics, DONE_KEY: 1.0})


def _has_run(loop_config: dict[str, Any]) -> bool:
    """The run has an MLflow run to log into: its id, or (a sweep trial, whose run the sweep's
    driver opened) a parent run to find it under by the trial's name."""
    return loop_config.get("run_id") is not None or loop_config.get("parent_run_id") is not None


def _open_worker_logger(cfg: ExperimentConfig, loop_config: dict[str, Any], run_id: str | None):
    """Rank 0's `TrialLogger` for `run_id` (None: the trial's run under its parent run) and the
    last epoch that run already has."""
    from dear_ray.tracking import TrialLogger

    logger = TrialLogger(cfg.tracking.uri, loop_config["experiment"],
                         run_name=loop_config["trial_name"],
                         parent_run_id=loop_config.get("parent_run_id"), run_id=run_id)
    return logger, _last_logged_epoch(cfg.tracking.uri, logger.run_id)


def _last_logged_epoch(tracking_uri: str, run_id: str) -> int:
    """The last epoch already logged to the run (-1 if none): a restart re-trains the epochs after
    the last registered checkpoint, which may already have been logged once."""
    from mlflow import MlflowClient

    history = MlflowClient(tracking_uri).get_metric_history(run_id, "epoch")
    return max((int(m.step) for m in history), default=-1)


def _epoch_metrics(values: dict[str, float], *, epoch: int, anneal: float) -> dict[str, float]:
    """Loss terms get a `train_` prefix; lr, timing and bad-video counts keep their names."""
    plain = {"lr", "epoch_time_s", "clips_per_s", "bad_videos", "skipped_batches", "train_top1"}
    out = {"epoch": epoch, "anneal": anneal}
    for key, value in values.items():
        out[key if key in plain else f"train_{key}"] = float(value)
    return out


def _report(metrics, *, save: bool, rank: int, session, cfg: ExperimentConfig, trial: str,
            model, optimizer, scheduler, epoch: int, global_step: int, extra: dict) -> None:
    """One report on every rank; rank 0 attaches the checkpoint when `save`."""
    import yaml

    from dear_ray.train.checkpointing import save_checkpoint

    if not (save and rank == 0):
        session.report(metrics)
        return
    state = dict(model=model, optimizer=optimizer, scheduler=scheduler, epoch=epoch,
                 global_step=global_step, extra=extra,
                 config_yaml=yaml.safe_dump(cfg.to_dict(), sort_keys=False))
    name = f"{CHECKPOINT_PREFIX}{epoch:04d}"
    if not session.ray_storage:
        # no Ray storage: the checkpoints stay under the run folder, where Ray Train would have
        # put them, each written whole before it takes its name (a process killed while saving
        # leaves a `.partial` folder, never a checkpoint without its state), so
        # `latest_local_checkpoint` resumes the run after the last complete one
        directory = cfg.run_root() / "ray" / trial / name
        partial = directory.with_name(directory.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        save_checkpoint(partial, **state)
        shutil.rmtree(directory, ignore_errors=True)
        partial.rename(directory)
        keep = cfg.checkpoint.num_to_keep
        if keep is not None:
            for old in _local_checkpoints(directory.parent)[:-keep]:
                shutil.rmtree(old)
        session.report(metrics, checkpoint=directory)
        return
    with tempfile.TemporaryDirectory() as tmp:
        save_checkpoint(tmp, **state)
        session.report(metrics, checkpoint=Path(tmp), checkpoint_dir_name=name)


class _RayTrainSession:
    """The loop's link to Ray Train, on each worker of a worker group; the checkpoints go to Ray
    Train's storage (`ray_storage`)."""

    ray_storage = True

    def __init__(self) -> None:
        self.last_metrics: dict[str, Any] | None = None

    def rank_world(self) -> tuple[int, int]:
        import ray.train

        ctx = ray.train.get_context()
        return ctx.get_world_rank(), ctx.get_world_size()

    def device(self):
        import ray.train.torch

        return ray.train.torch.get_device()

    def prepare_loader(self, loader):
        import ray.train.torch

        return ray.train.torch.prepare_data_loader(loader, add_dist_sampler=False)

    def prepare_model(self, module):
        import ray.train.torch

        return ray.train.torch.prepare_model(
            module, parallel_strategy_kwargs={"find_unused_parameters": True})

    def checkpoint(self, folder: Path):
        import ray.train

        return ray.train.get_checkpoint()

    def report(self, metrics: dict[str, Any], *, checkpoint: Path | None = None,
               checkpoint_dir_name: str | None = None) -> None:
        import ray.train

        self.last_metrics = metrics
        if checkpoint is None:
            ray.train.report(metrics)
        else:
            ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(str(checkpoint)),
                             checkpoint_dir_name=checkpoint_dir_name)


class _InProcessSession:
    """The loop run by the calling process (`resources.num_workers: 0`): one rank, no process
    group, no Ray Train worker group. In a sweep that process is the Tune trial's (`tune`; Ray
    refuses `ray.train.report` inside a Tune function): each report goes to Tune as Ray Train's
    `TuneReportCallback` sends it (the metrics, plus the checkpoint's path under
    `checkpoint_path`). Each report also goes to the caller's Ray Train `UserCallback`s
    (`after_report(None, [metrics], checkpoint)`: `dear-ray train` prints its epoch lines so).
    The checkpoints stay in the run folder; a rerun continues after the last complete one."""

    ray_storage = False

    def __init__(self, cfg: ExperimentConfig, *, callbacks=(), tune: bool = False) -> None:
        self._gpu = cfg.resources.use_gpu
        self._callbacks = list(callbacks)
        self._tune = tune
        self.last_metrics: dict[str, Any] | None = None

    def rank_world(self) -> tuple[int, int]:
        return 0, 1

    def device(self):
        import torch

        # Ray made the trial's GPU the only visible one
        return torch.device("cuda", 0) if self._gpu and torch.cuda.is_available() \
            else torch.device("cpu")

    def prepare_loader(self, loader):
        return loader  # one rank: nothing to shard; the loop moves each batch itself

    def prepare_model(self, module):
        return module.to(self.device())  # one rank: no DDP wrapper (as Ray Train's world of 1)

    def checkpoint(self, folder: Path):
        return latest_local_checkpoint(folder)

    def report(self, metrics: dict[str, Any], *, checkpoint: Path | None = None,
               checkpoint_dir_name: str | None = None) -> None:
        self.last_metrics = metrics
        if self._callbacks:
            from ray.train import Checkpoint

            reported = None if checkpoint is None else Checkpoint.from_directory(str(checkpoint))
            for callback in self._callbacks:
                callback.after_report(None, [metrics], reported)
        if self._tune:
            from ray import tune
            from ray.tune.integration.ray_train import CHECKPOINT_PATH_KEY

            extra = {} if checkpoint is None else {CHECKPOINT_PATH_KEY: str(checkpoint)}
            tune.report({**metrics, **extra})


def _session_for(loop_config: dict[str, Any]):
    """The in-process session `run_training` passed, else this Ray Train worker's."""
    return loop_config.get("session") or _RayTrainSession()


CHECKPOINT_PREFIX = "checkpoint_epoch_"


def _local_checkpoints(folder: Path) -> list[Path]:
    """A run's complete checkpoints in its folder (a `state.pt` each), oldest first."""
    from dear_ray.train.checkpointing import STATE_FILE

    if not folder.is_dir():
        return []
    return sorted(p for p in folder.glob(f"{CHECKPOINT_PREFIX}[0-9]*")
                  if p.is_dir() and p.name[len(CHECKPOINT_PREFIX):].isdigit()
                  and (p / STATE_FILE).is_file())


def latest_local_checkpoint(folder: Path):
    """The last complete checkpoint a run without Ray storage (`resources.num_workers: 0`)
    saved in its folder `<run_root>/ray/<trial>`, as a `ray.train.Checkpoint`; None when there
    is none. Ray Train resumes a worker-group run of the same name from its storage; this does
    the same for a loop run in-process (a resumed or retried sweep trial, `dear-ray train
    --resume`)."""
    from ray.train import Checkpoint

    found = _local_checkpoints(Path(folder))
    return Checkpoint.from_directory(str(found[-1])) if found else None


def _maybe_fail(cfg: ExperimentConfig, trial: str, epoch: int, rank: int) -> None:
    """The injected fault of `debug.fail_at_epoch`: rank 0's process dies once (marker file)."""
    if cfg.debug.fail_at_epoch != epoch or rank != 0:
        return
    marker = cfg.run_root() / "debug" / f"{trial}.failed_at_epoch_{epoch}"
    if marker.exists():
        return
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.touch()
    log.warning("debug.fail_at_epoch: killing worker process %d at epoch %d", os.getpid(), epoch)
    os._exit(1)


def _seed_everything(seed: int) -> None:
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


__all__ = ["run_training", "train_fn_per_worker"]
