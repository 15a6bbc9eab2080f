"""Wall time of the sharded evaluation of one split with 1 and 2 Ray Train workers.

An `eval_only` run (`dear_ray.train.driver.run_training`, the path of `dear-ray test`) scores one
split of a synthetic data set with a random tiny model: every worker decodes, transforms and
predicts its own contiguous shard of batches (`dear_ray.train.evaluation.shard_range`), rank 0
gathers the shards and writes the store. The time compared is the split's `<split>_eval_time_s`
metric (rank 0's wall time from the start of its shard to the merged predictions: the slowest
shard plus the gather), so Ray's start-up and `TorchTrainer.fit` overhead are left out; it is also
printed as the whole run's wall time. The baseline is the 1-worker run measured in the same
process; the ratio is baseline / 2 workers (ideal: 2.0 on 2 free cores; decoding runs in the
workers' main processes, `data.num_workers: 0`). Each setting runs `--repeats` times; the
fastest is kept.

Run: ``.venv/bin/python benchmarks/evaluation_scaling.py [--videos-per-class 16] [--views 10]
[--repeats 2] [--gpu]`` (``--gpu``: one GPU per worker, for a GPU machine).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import torch


def config(data_root: Path, run_dir: Path, checkpoint: Path, *, workers: int, views: int,
           gpu: bool) -> dict:
    return {
        "name": "bench", "eval_only": True,
        "data": {"data_root": str(data_root), "clip_len": 8, "frame_interval": 2, "crop_size": 56,
                 "scale_short": 64, "batch_size": 4, "num_workers": 0,
                 "test_views": {"num_clips": views, "num_crops": 1}},
        "model": {"backbone": "i3d_tiny", "head": "softmax", "pretrained": str(checkpoint)},
        "eval": {"splits": ["train"], "stochastic_passes": 10, "every_n_epochs": 0},
        "resources": {"num_workers": workers, "cpus_per_worker": 0.5 if not gpu else 4,
                      "use_gpu": gpu, "gpus_per_worker": 1},
        "tracking": {"run_dir": str(run_dir)},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--videos-per-class", type=int, default=16)
    parser.add_argument("--views", type=int, default=10, help="test clips per video")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--gpu", action="store_true")
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ.pop("MLFLOW_TRACKING_URI", None)

    from dear_ray.config import load_config
    from dear_ray.data.synth import generate_dataset
    from dear_ray.models import build_recognizer
    from dear_ray.train.driver import run_training
    from dear_ray.tune.local_ray import PrivateRay

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        generate_dataset(tmp / "data", seed=0, known_classes=4, unknown_classes=2,
                         videos_per_class=args.videos_per_class, frames=16, size=64, workers=2)
        torch.manual_seed(0)
        model = build_recognizer(backbone="i3d_tiny", head="softmax", num_classes=4)
        checkpoint = tmp / "model.pth"
        torch.save({"state_dict": model.state_dict()}, checkpoint)
        private = PrivateRay(tmp / "ray", num_cpus=max(2, os.cpu_count() or 2))
        private.start()
        results: dict[int, tuple[float, float, int]] = {}
        try:
            for workers in (1, 2):
                best = (float("inf"), float("inf"))
                for r in range(args.repeats):
                    cfg = load_config(config(tmp / "data", tmp / "runs", checkpoint,
                                             workers=workers, views=args.views, gpu=args.gpu))
                    start = time.perf_counter()
                    out = run_training(cfg, trial_name=f"w{workers}_{r}")
                    wall = time.perf_counter() - start
                    best = min(best, (out["train_eval_eval_time_s"], wall))
                from dear_ray.scores.store import read_score_store
                from dear_ray.train.evaluation import stores_dir

                videos = len(read_score_store(stores_dir(cfg, f"w{workers}_0") /
                                              "train.parquet").video_ids)
                results[workers] = (*best, videos)
        finally:
            private.stop()
    base = results[1][0]
    print(f"evaluation of one split ({results[1][2]} videos x {args.views} views, i3d_tiny "
          f"softmax, 10 MC-dropout passes, {'GPU' if args.gpu else 'CPU'}; "
          f"{os.cpu_count()} cores on this machine)")
    print(f"{'workers':>7}  {'split eval (s)':>14}  {'whole run (s)':>13}  {'videos/s':>8}  "
          f"{'speed-up vs 1 worker':>20}")
    for workers, (split_s, wall, videos) in results.items():
        print(f"{workers:>7}  {split_s:>14.2f}  {wall:>13.1f}  {videos / split_s:>8.1f}  "
              f"{base / split_s:>19.2f}x")


if __name__ == "__main__":
    main()
