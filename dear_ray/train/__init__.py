"""The per-worker training loop (`loop`), optimiser and schedules (`optim`), checkpoints
(`checkpointing`), loaders from the config (`data`) and the Ray Train driver (`driver`)."""

from dear_ray.train.checkpointing import TrainState, load_checkpoint, save_checkpoint
from dear_ray.train.driver import run_training, train_fn_per_worker
from dear_ray.train.evaluation import evaluate_splits
from dear_ray.train.loop import Predictions, TrainingStep, predict, train_one_epoch
from dear_ray.train.optim import build_optimizer, build_scheduler, lr_factor, param_groups

__all__ = ["Predictions", "TrainState", "TrainingStep", "build_optimizer", "build_scheduler",
           "evaluate_splits", "load_checkpoint", "lr_factor", "param_groups", "predict",
           "run_training", "save_checkpoint", "train_fn_per_worker", "train_one_epoch"]
