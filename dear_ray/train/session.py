"""Where the training loop runs: a `Session` gives the loop its rank and world size, its device,
the model and loaders prepared for that place, the latest checkpoint to resume from, and takes
its reports and checkpoints (Lightning Fabric's idea).

- `RayTrainSession`: a worker of a Ray Train worker group (DDP through Ray Train, checkpoints
  in Ray Train's storage);
- `InProcessSession`: the calling process (`resources.num_workers: 0`): one rank, checkpoints
  in the run folder, reports to the caller's callbacks and, in a sweep trial, to Tune.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from dear_ray.config import ExperimentConfig

CHECKPOINT_PREFIX = "checkpoint_epoch_"
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


class RayTrainSession:
    """The loop's link to Ray Train, on each worker of a worker group; the checkpoints go to Ray
    Train's storage."""

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

    def latest_checkpoint(self, folder: Path):
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

    def save(self, metrics: dict[str, Any], state: dict[str, Any], *, name: str, folder: Path,
             keep: int | None) -> None:
        """Report `metrics` with a checkpoint of `state` named `name` (Ray Train stores it and
        keeps `keep`; `folder` is the run folder's, unused here)."""
        from dear_ray.train.checkpointing import save_checkpoint

        with tempfile.TemporaryDirectory() as tmp:
            save_checkpoint(tmp, **state)
            self.report(metrics, checkpoint=Path(tmp), checkpoint_dir_name=name)


class InProcessSession:
    """The loop run by the calling process (`resources.num_workers: 0`): one rank, no process
    group, no Ray Train worker group. In a sweep that process is the Tune trial's (`tune`; Ray
    refuses `ray.train.report` inside a Tune function): each report goes to Tune as Ray Train's
    `TuneReportCallback` sends it (the metrics, plus the checkpoint's path under
    `checkpoint_path`). Each report also goes to the caller's Ray Train `UserCallback`s
    (`after_report(None, [metrics], checkpoint)`: `dear-ray train` prints its epoch lines so).
    The checkpoints stay in the run folder; a rerun continues after the last complete one."""

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

    def latest_checkpoint(self, folder: Path):
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

    def save(self, metrics: dict[str, Any], state: dict[str, Any], *, name: str, folder: Path,
             keep: int | None) -> None:
        """Report `metrics` with a checkpoint of `state` in `folder / name`, keeping the last
        `keep`. No Ray storage: the checkpoints stay under the run folder, where Ray Train would
        have put them, each written whole before it takes its name (a process killed while
        saving leaves a `.partial` folder, never a checkpoint without its state), so
        `latest_local_checkpoint` resumes the run after the last complete one."""
        from dear_ray.train.checkpointing import save_checkpoint

        directory = folder / name
        partial = directory.with_name(directory.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        save_checkpoint(partial, **state)
        shutil.rmtree(directory, ignore_errors=True)
        partial.rename(directory)
        if keep is not None:
            for old in _local_checkpoints(folder)[:-keep]:
                shutil.rmtree(old)
        self.report(metrics, checkpoint=directory)


def session_for(loop_config: dict[str, Any]):
    """The in-process session `run_training` passed, else this Ray Train worker's."""
    return loop_config.get("session") or RayTrainSession()



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
