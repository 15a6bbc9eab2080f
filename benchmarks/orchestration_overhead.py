"""Wall time of one trial through the sweep machinery vs the same training loop called directly.

Both sides train the same tiny model on the same synthetic data for the same epochs, then score
every evaluation split into score stores:

- ``direct``: one process, no Ray, no MLflow: the recognizer, loader, optimiser and schedule of
  the config, ``train_one_epoch`` per epoch, then ``evaluate_splits`` (the functions the Ray Train
  worker calls);
- ``sweep``: ``run_sweep`` on a one-trial sweep: local ``ray.init`` (dashboard on), Ray Tune, the
  trial driver, Ray Train's ``TorchTrainer`` with one worker, per-epoch checkpoints and reports,
  MLflow parent/child runs, and the results aggregator (tables and plots) at the end.

The ratio sweep / direct is the price of orchestration for a tiny model; it shrinks as training
gets longer because the fixed costs (Ray start-up ~5 s, ``TorchTrainer.fit`` start-up, the
report's plots) do not grow with epochs.

Run: ``.venv/bin/python benchmarks/orchestration_overhead.py [--epochs 2] [--head edl]
[--data DIR]`` (without ``--data`` a small synthetic data set is generated into a temporary folder).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch


def tiny_config(data_root: Path, run_dir: Path, *, head: str, epochs: int) -> dict:
    """The tiny preset shared by both sides."""
    return {
        "name": "bench",
        "data": {"data_root": str(data_root), "clip_len": 8, "crop_size": 56, "scale_short": 64,
                 "batch_size": 8},
        "model": {"backbone": "i3d_tiny", "head": head},
        "optim": {"epochs": epochs, "lr": 0.01},
        "eval": {"stochastic_passes": 3, "every_n_epochs": 0},
        "resources": {"num_workers": 1, "cpus_per_worker": 1},
        "tracking": {"run_dir": str(run_dir)},
    }


def train_direct(cfg) -> float:
    """The training loop in this process, no Ray and no MLflow; returns seconds."""
    from dear_ray.losses import annealing_coefficient
    from dear_ray.models import build_recognizer
    from dear_ray.train.data import build_train_loader, num_known_classes
    from dear_ray.train.evaluation import evaluate_splits
    from dear_ray.train.loop import TrainingStep, train_one_epoch
    from dear_ray.train.optim import build_optimizer, build_scheduler

    start = time.perf_counter()
    torch.manual_seed(cfg.seed)
    device = torch.device("cpu")
    k = num_known_classes(cfg.data)
    model = build_recognizer(backbone=cfg.model.backbone, head=cfg.model.head, num_classes=k,
                             dropout=cfg.model.dropout)
    loader, _ = build_train_loader(cfg, num_classes=k)
    step = TrainingStep(model)
    optimizer = build_optimizer(model, cfg.optim)
    scheduler = build_scheduler(optimizer, cfg.optim, len(loader))
    global_step = 0
    for epoch in range(cfg.optim.epochs):
        loader.dataset.set_epoch(epoch)
        result = train_one_epoch(step, loader, optimizer, scheduler, epoch=epoch,
                                 anneal=annealing_coefficient(epoch, cfg.optim.epochs),
                                 global_step=global_step, device=device)
        global_step = result.global_step
    evaluate_splits(model, cfg, "direct", k, device, False)
    return time.perf_counter() - start


def train_sweep(cfg_dict: dict) -> tuple[float, dict[str, float]]:
    """The same config as a one-trial sweep through `run_sweep`; returns seconds and the parts."""
    from dear_ray.tune.sweep import parse_sweep, run_sweep

    spec = parse_sweep({"name": "bench_sweep", "base": cfg_dict,
                        "grid": {"model.head": [cfg_dict["model"]["head"]]}})
    start = time.perf_counter()
    result = run_sweep(spec)
    seconds = time.perf_counter() - start
    if result.failed:
        raise RuntimeError(f"the benchmark trial failed: {result.failed}")
    return seconds, result.timings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--head", default="edl")
    parser.add_argument("--data", type=Path, default=None, help="an existing synthetic data set")
    args = parser.parse_args()
    torch.set_num_threads(1)  # the Ray Train worker (1 CPU) gets one thread too

    from dear_ray.config import load_config

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        data = args.data
        if data is None:
            from dear_ray.data.synth import generate_dataset

            data = tmp / "synth"
            generate_dataset(data, seed=0, known_classes=4, unknown_classes=2,
                             videos_per_class=8, frames=16, size=64, workers=2)
        cfg_dict = tiny_config(data, tmp / "runs", head=args.head, epochs=args.epochs)
        direct = train_direct(load_config(cfg_dict))
        sweep, parts = train_sweep(cfg_dict)
    print(f"one trial, {args.epochs} epoch(s), head {args.head}, i3d_tiny on {data}")
    print(f"  direct loop (one process, no Ray/MLflow): {direct:7.1f} s")
    print(f"  through run_sweep (Ray Tune + Train + MLflow + report): {sweep:7.1f} s")
    print("    of which " + ", ".join(f"{k} {v:.1f}" for k, v in parts.items()))
    print(f"  ratio sweep / direct: {sweep / direct:.2f}x  (fixed overhead {sweep - direct:.1f} s)")


if __name__ == "__main__":
    main()
