"""The training loop of one worker, as a recipe: set up, resume, one epoch at a time, finish.

`train_fn_per_worker(loop_config)` runs on every Ray Train worker (or in the calling process,
`resources.num_workers: 0`); where it runs is its `Session` (`dear_ray.train.session`). Rank 0
alone logs to the trial's MLflow run (`RankZeroLog`). torch, the data, model and evaluation code
are imported inside the functions, so that importing this module stays cheap.

MLflow: rank 0 logs into the trial's run by run id (also stored in each checkpoint), one step per
epoch. A restarted worker group resumes after the last checkpoint Ray registered, which may be
older than the last epoch logged (a worker dying right after a report); rank 0 therefore skips
epochs the run already has, so the history has every epoch exactly once.
"""

from __future__ import annotations

import logging
import os
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dear_ray.config import ExperimentConfig, load_config
from dear_ray.timeline import mark
from dear_ray.train.session import CHECKPOINT_PREFIX, session_for

log = logging.getLogger(__name__)
RUN_ID_KEY = "mlflow_run_id"
DONE_KEY = "trial_done"  # 1 in the last report of a run that trained (if any) and evaluated


def train_fn_per_worker(loop_config: dict[str, Any]) -> dict[str, Any] | None:
    """The Ray Train loop of one worker; everything it uses comes in `loop_config`.

    Keys: `config` (the resolved config dict, `tracking.uri` set), `trial_name`, `parent_run_id`,
    `run_id` (MLflow run to log into), `experiment`, and, when `run_training` runs the loop in its
    own process (`num_workers: 0`), `session` (`InProcessSession`). Returns the last report's
    metrics.
    """
    worker = setup(loop_config)
    if worker.cfg.eval_only:
        _evaluate_only(worker, loop_config)
        return worker.session.last_metrics
    build_training(worker)
    resume(worker)
    epochs = worker.cfg.optim.epochs
    mark(worker.run_root, worker.trial, "worker_ready", rank=worker.rank)
    for epoch in range(worker.start_epoch, epochs):
        run_epoch(worker, epoch)
    if worker.start_epoch >= epochs:  # resumed after the last epoch: only the evaluation is left
        finish_evaluation(worker)
    return worker.session.last_metrics


class RankZeroLog:
    """Rank 0's `TrialLogger`, opened in a thread while the model and loaders are built (a fresh
    process spends ~2.5 s importing MLflow and opening its store) and joined after the first
    epoch; `logger` stays None on other ranks and for runs without an MLflow run."""

    def __init__(self, cfg: ExperimentConfig, loop_config: dict[str, Any], rank: int) -> None:
        self.cfg, self.loop_config = cfg, loop_config
        self.logger, self.logged_through = None, -1
        self.opening = None
        self.pending = False
        if rank == 0 and _has_run(loop_config):
            from concurrent.futures import ThreadPoolExecutor

            pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mlflow-open")
            self.opening = pool.submit(_open_worker_logger, cfg, loop_config,
                                       loop_config.get("run_id"))
            pool.shutdown(wait=False)

    def join(self, run_id: str | None, resumed_at: int | None) -> str | None:
        """The logger, once: the run the checkpoint names (`run_id`) if it is another one; a
        restart logs `resumed_at_epoch`. Returns the run id to record in checkpoints."""
        if not self.pending:
            return run_id
        self.pending = False
        self.logger, self.logged_through = self.opening.result() if self.opening is not None \
            else (None, -1)
        if self.logger is None or (run_id is not None and self.logger.run_id != run_id):
            # the checkpoint names another run
            self.logger, self.logged_through = _open_worker_logger(self.cfg, self.loop_config,
                                                                   run_id)
        if resumed_at is not None:  # a restart: MLflow shows where each one picked up
            self.logger.log_metrics({"resumed_at_epoch": float(resumed_at)}, step=resumed_at)
        return self.logger.run_id


@dataclass
class Worker:
    """What `setup`, `build_training` and `resume` give the epochs: the config and session, the
    model and its training objects, the loaders and where the run stands."""

    cfg: ExperimentConfig
    loop_config: dict[str, Any]
    session: Any
    rank: int
    world: int
    device: Any
    amp: bool
    channels_last: bool
    num_classes: int
    model: Any
    new_parameters: set | None
    log: RankZeroLog
    loaders: dict[str, Any] = field(default_factory=dict)
    step_module: Any = None
    optimizer: Any = None
    scheduler: Any = None
    shard_size: int = 0
    start_epoch: int = 0
    global_step: int = 0
    run_id: str | None = None
    last_val: float | None = None
    resumed: bool = False

    @property
    def trial(self) -> str:
        return self.loop_config["trial_name"]

    @property
    def run_root(self) -> Path:
        return self.cfg.run_root()


def setup(loop_config: dict[str, Any]) -> Worker:
    """The config, session, seeds, device and model (with `model.pretrained` loaded)."""
    cfg_dict, trial = loop_config["config"], loop_config["trial_name"]
    run_root = Path(cfg_dict["tracking"]["run_dir"]) / cfg_dict["name"]
    mark(run_root, trial, "worker_start")
    import torch

    from dear_ray.models import build_recognizer
    from dear_ray.models import load_checkpoint as load_pretrained
    from dear_ray.train.cached_features import attach_feature_cache
    from dear_ray.train.data import num_known_classes
    from dear_ray.train.loop import to_channels_last_3d

    cfg = load_config(cfg_dict)
    session = session_for(loop_config)
    rank, world = session.rank_world()
    mark(run_root, trial, "worker_imports_done", rank=rank)
    rank_zero_log = RankZeroLog(cfg, loop_config, rank)
    _seed_everything(cfg.seed + 1000 * rank)
    device = session.device()
    on_gpu = device.type == "cuda"
    if on_gpu:
        torch.backends.cudnn.benchmark = cfg.resources.cudnn_benchmark
    layout = cfg.resources.channels_last_3d  # "gpu": on GPU workers only
    num_classes = num_known_classes(cfg.data)
    model = build_recognizer(num_classes=num_classes, **cfg.model.recognizer_options())
    new_parameters = None  # nothing pretrained: every parameter is new
    if cfg.model.pretrained:
        loaded = load_pretrained(model, cfg.model.pretrained, complete=cfg.eval_only)
        if rank == 0:
            log.info("%s", loaded)
        new_parameters = set(loaded.missing) | set(loaded.skipped_classifier)
    attach_feature_cache(model, cfg, num_classes, device, cfg.resources.amp and on_gpu)
    channels_last = layout is True or (layout == "gpu" and on_gpu)
    if channels_last:
        model = to_channels_last_3d(model)
    return Worker(cfg=cfg, loop_config=loop_config, session=session, rank=rank, world=world,
                  device=device, amp=cfg.resources.amp and on_gpu, channels_last=channels_last,
                  num_classes=num_classes, model=model, new_parameters=new_parameters,
                  log=rank_zero_log)


def build_training(w: Worker) -> None:
    """The loaders (this rank's shard; SDN's masked loader), the prepared step module, the
    optimiser and the schedule."""
    from dear_ray.train.cached_features import cached_entries
    from dear_ray.train.data import build_masked_loader, build_train_loader, load_side_inputs
    from dear_ray.train.loop import TrainingStep
    from dear_ray.train.optim import build_optimizer, build_scheduler

    cfg = w.cfg
    mark(w.run_root, w.trial, "worker_model_built", rank=w.rank)
    side_inputs = load_side_inputs(cfg.data, cfg.model.head_options.get("scene_labels", "soft"))
    # on a GPU the loader hands uint8 clips over and the step normalises them on the device
    # (dear_ray.train.data: the same numbers as the CPU path); on a CPU float clips are cheaper
    on_gpu = w.device.type == "cuda"
    options = dict(num_classes=w.num_classes, rank=w.rank, world_size=w.world,
                   side_inputs=side_inputs, handover="uint8" if on_gpu else "float",
                   pin_memory=on_gpu)
    train_loader, sampler = build_train_loader(cfg, **options, features=cached_entries(w.model))
    # SDN's separate mask step: an independent loader of masked clips (None otherwise)
    masked_loader, masked_sampler = build_masked_loader(cfg, **options)
    w.shard_size = len(sampler) if sampler is not None else len(train_loader.dataset)
    iters_per_epoch = len(train_loader)
    w.loaders = {"train": (train_loader.dataset, train_loader.generator, sampler)}
    if masked_loader is not None:
        iters_per_epoch = min(iters_per_epoch, len(masked_loader))  # SDN zips the two loaders
        w.loaders["masked"] = (masked_loader.dataset, masked_loader.generator, masked_sampler)
        w.loaders["masked_loader"] = w.session.prepare_loader(masked_loader)
    w.loaders["train_loader"] = w.session.prepare_loader(train_loader)
    w.step_module = w.session.prepare_model(TrainingStep(w.model))
    w.optimizer = build_optimizer(w.model, cfg.optim, w.new_parameters)
    w.scheduler = build_scheduler(w.optimizer, cfg.optim, iters_per_epoch)


def resume(w: Worker) -> None:
    """Continue after the session's latest checkpoint, if any (model, optimiser, schedule, RNG,
    the MLflow run it logged to)."""
    from dear_ray.train.checkpointing import load_checkpoint

    w.run_id = w.loop_config.get("run_id")
    checkpoint = w.session.latest_checkpoint(w.run_root / "ray" / w.trial)
    if checkpoint is not None:
        with checkpoint.as_directory() as directory:
            state = load_checkpoint(directory, model=w.model, optimizer=w.optimizer,
                                    scheduler=w.scheduler, restore_rng=w.rank == 0,
                                    map_location=w.device)
        w.start_epoch, w.global_step = state.epoch + 1, state.global_step
        w.run_id = state.extra.get(RUN_ID_KEY) or w.run_id
        w.last_val = state.extra.get("val_top1")
        w.resumed = True
        if w.rank != 0:
            _seed_everything(w.cfg.seed + 1000 * w.rank + w.start_epoch)
        log.info("rank %d resumes %s at epoch %d (step %d)", w.rank, w.trial, w.start_epoch,
                 w.global_step)
    mark(w.run_root, w.trial, "worker_loaders_built", rank=w.rank)
    # rank 0's logger: joined after the first epoch
    w.log.pending = w.rank == 0 and (w.run_id is not None or _has_run(w.loop_config))


def _join_log(w: Worker) -> None:
    w.run_id = w.log.join(w.run_id, w.start_epoch if w.resumed else None)


def _set_epoch(w: Worker, epoch: int) -> None:
    """Every loader's epoch: the dataset's augmentation streams, the shuffle, the shard."""
    for key, offset in (("train", 0), ("masked", 1)):
        if key in w.loaders:
            dataset, generator, sampler = w.loaders[key]
            dataset.set_epoch(epoch)
            generator.manual_seed(w.cfg.seed * 100_003 + epoch + offset)
            if sampler is not None:
                sampler.set_epoch(epoch)


def _train_epoch(w: Worker, epoch: int, anneal: float) -> dict[str, float]:
    """One epoch of `train_one_epoch`, its bad videos appended to the rank's list."""
    from dear_ray.data.dataset import BadVideoReport, TooManyBadVideosError
    from dear_ray.train.bad_videos import append_bad_videos, bad_videos_dir
    from dear_ray.train.loop import train_one_epoch

    cfg = w.cfg
    report = BadVideoReport(w.shard_size, cfg.data.max_bad_fraction, name=f"train (rank {w.rank})")
    bad_list = bad_videos_dir(w.run_root, w.trial) / f"train_rank{w.rank}.csv"
    try:
        result = train_one_epoch(w.step_module, w.loaders["train_loader"], w.optimizer,
                                 w.scheduler, epoch=epoch, anneal=anneal,
                                 global_step=w.global_step, device=w.device,
                                 grad_clip=cfg.optim.grad_clip, amp=w.amp,
                                 channels_last=w.channels_last, bad_report=report,
                                 masked_loader=w.loaders.get("masked_loader"),
                                 check_every_n_steps=cfg.resources.check_every_n_steps)
    except TooManyBadVideosError:  # the list the error message points to
        append_bad_videos(bad_list, report.bad, split="train", epoch=epoch, rank=w.rank)
        raise
    append_bad_videos(bad_list, report.bad, split="train", epoch=epoch, rank=w.rank)
    w.global_step = result.global_step
    return result.metrics


def run_epoch(w: Worker, epoch: int) -> None:
    """Train one epoch, validate when due, evaluate after the last, log and report (with a
    checkpoint when due)."""
    from dear_ray.losses import annealing_coefficient
    from dear_ray.train.evaluation import evaluate_splits, validate
    from dear_ray.train.loop import epoch_metrics

    cfg, epochs = w.cfg, w.cfg.optim.epochs
    _maybe_fail(cfg, w.trial, epoch, w.rank)
    _set_epoch(w, epoch)
    anneal = annealing_coefficient(epoch, epochs)
    values = _train_epoch(w, epoch, anneal)
    _join_log(w)
    metrics = epoch_metrics(values, epoch=epoch, anneal=anneal)
    last = epoch == epochs - 1
    every = cfg.eval.every_n_epochs
    if every and ((epoch + 1) % every == 0 or last):  # every rank: a shard each
        w.last_val = validate(w.model, cfg, w.num_classes, w.device, w.amp)
    if w.rank == 0 and w.last_val is not None:
        metrics["val_top1"] = w.last_val
    mark(w.run_root, w.trial, "epoch_trained", rank=w.rank)
    if last:
        metrics.update(evaluate_splits(w.model, cfg, w.trial, w.num_classes, w.device, w.amp,
                                       logger=w.log.logger))
        _log_bad_videos(w.log.logger, cfg, w.trial)
        mark(w.run_root, w.trial, "evaluation_done", rank=w.rank)
    if w.log.logger is not None and epoch > w.log.logged_through:
        w.log.logger.log_metrics(metrics, step=epoch)
    save = last or (epoch + 1) % cfg.checkpoint.every_n_epochs == 0
    _report(w, {**metrics, DONE_KEY: 1.0} if last else metrics, save=save, epoch=epoch)
    mark(w.run_root, w.trial, "epoch_reported", rank=w.rank)


def finish_evaluation(w: Worker) -> None:
    """A run resumed after its last epoch: evaluate and report the final metrics."""
    from dear_ray.train.evaluation import evaluate_splits

    _join_log(w)
    epochs = w.cfg.optim.epochs
    metrics = {"epoch": epochs - 1}
    metrics.update(evaluate_splits(w.model, w.cfg, w.trial, w.num_classes, w.device, w.amp,
                                   logger=w.log.logger))
    w.session.report({**metrics, DONE_KEY: 1.0})


def _report(w: Worker, metrics: dict, *, save: bool, epoch: int) -> None:
    """One report on every rank; rank 0 attaches the checkpoint when `save`."""
    import yaml

    if not (save and w.rank == 0):
        w.session.report(metrics)
        return
    state = dict(model=w.model, optimizer=w.optimizer, scheduler=w.scheduler, epoch=epoch,
                 global_step=w.global_step, extra={RUN_ID_KEY: w.run_id, "val_top1": w.last_val},
                 config_yaml=yaml.safe_dump(w.cfg.to_dict(), sort_keys=False))
    w.session.save(metrics, state, name=f"{CHECKPOINT_PREFIX}{epoch:04d}",
                   folder=w.run_root / "ray" / w.trial, keep=w.cfg.checkpoint.num_to_keep)


def _log_bad_videos(logger, cfg: ExperimentConfig, trial: str) -> None:
    """Rank 0: the run's bad-video lists (`dear_ray.train.bad_videos`) into its artifacts."""
    from dear_ray.train.bad_videos import bad_videos_dir

    folder = bad_videos_dir(cfg.run_root(), trial)
    if logger is not None and folder.is_dir() and any(folder.glob("*.csv")):
        logger.log_artifact(folder, artifact_path="bad_videos")


def _evaluate_only(w: Worker, loop_config: dict[str, Any]) -> None:
    """`eval_only`: every rank scores its shards of the evaluation splits; rank 0 writes the
    stores and logs the metrics (step 0) into the run; one report per rank, no checkpoint."""
    from dear_ray.train.evaluation import evaluate_splits

    logger = None
    if w.rank == 0 and _has_run(loop_config):
        from dear_ray.tracking import TrialLogger

        logger = TrialLogger(w.cfg.tracking.uri, loop_config["experiment"],
                             run_name=loop_config["trial_name"],
                             parent_run_id=loop_config.get("parent_run_id"),
                             run_id=loop_config.get("run_id"))
    metrics = evaluate_splits(w.model.to(w.device), w.cfg, loop_config["trial_name"],
                              w.num_classes, w.device, w.amp, logger=logger)
    if logger is not None:
        logger.log_metrics(metrics, step=0)
    w.session.report({**metrics, DONE_KEY: 1.0})


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
