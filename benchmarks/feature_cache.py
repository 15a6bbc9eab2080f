"""A frozen-backbone probe sweep, 9 heads x 3 seeds, with and without the feature cache.

Both arms train the same 27 trials (in this process, one after another, `resources.num_workers:
0`: `dear_ray.train.driver.run_training`, MLflow runs and score stores included) on the same
synthetic data with a small backbone (r(2+1)d-18's tiny preset) whose weights come from one file
(so every trial has the same frozen backbone whatever its seed):

- ``live``: `model.feature_cache: off`: every trial runs the backbone over the training clips of
  every epoch and over every scored split;
- ``cached``: `model.feature_cache: on` with `feature_cache_seed: 0`: the first trial extracts
  the training views of each epoch and the test views of each split, every other trial reads them.

The 9 probe heads: softmax, bnn, rpl, edl, edl_avu, dear, dear_alt, sdn (with the generator's
scene labels) and V-JEPA 2's attentive probe (softmax over `pooling: attentive`). psl cannot use
the cache (its training puts a random frame permutation of each batch through the backbone) and is
left out. Printed: the wall time of each arm, the backbone forward passes (calls and clips,
counted on the backbone class) and the ratios live / cached; and the largest difference of the
test top-1 between the arms over the seed-0 trials, whose cached training views are the live
ones (seeds 1 and 2 share the seed-0 views when cached, `feature_cache_seed: 0`).

Run: ``.venv/bin/python benchmarks/feature_cache.py [--seeds 3] [--epochs 2] [--frames 16]
[--size 128] [--crop 112] [--videos-per-class 4]`` (a few minutes on 2 CPU cores). One unmeasured live trial
first pays the imports and the first MLflow store.
"""

from __future__ import annotations

import argparse
import logging
import os
import tempfile
import time
from pathlib import Path

import torch

BACKBONE = "r2plus1d_18_tiny"  # ~25 ms a 16 x 112 clip on one CPU core: a backbone that costs
HEADS = {
    "softmax": {}, "bnn": {}, "rpl": {}, "edl": {}, "edl_avu": {},
    "dear": {"head_options": {"temporal_kernel": 1}},
    "dear_alt": {"head_options": {"temporal_kernel": 1}},
    "sdn": {}, "attentive": {"head": "softmax", "pooling": "attentive",
                             "pooling_options": {"depth": 1, "num_heads": 2}},
}


def probe_config(head: str, seed: int, *, cache: bool, root: Path, run_dir: Path,
                 weights: Path, args) -> dict:
    """One trial of the sweep."""
    model = {"backbone": BACKBONE, "head": head, "freeze_backbone": True,
             "pretrained": str(weights), "feature_cache": "on" if cache else "off",
             **HEADS[head]}
    if cache:
        model["feature_cache_seed"] = 0
    data = {"data_root": str(root), "clip_len": args.frames, "crop_size": args.crop,
            "scale_short": args.size, "batch_size": 8,
            "test_views": {"num_clips": 2, "num_crops": 1}}
    if head == "sdn":  # the generator's scene pseudo-labels, as many places as it draws
        from dear_ray.data.sdn_inputs import load_scene_labels

        data["scene_labels"] = "scene_labels.npy"
        places = len(next(iter(load_scene_labels(root / "scene_labels.npy", "soft").values())))
        model["head_options"] = {"num_places": places}
    return {"name": f"{'cached' if cache else 'live'}_{head}_s{seed}", "seed": seed,
            "data": data, "model": model,
            "optim": {"epochs": args.epochs, "lr": 0.01},
            "eval": {"stochastic_passes": 3, "every_n_epochs": 0},
            "resources": {"num_workers": 0},
            "tracking": {"run_dir": str(run_dir), "experiment": "feature_cache_bench"}}


class ForwardCounter:
    """Counts `forward_features` calls (and clips) of the benchmark's backbone class."""

    def __init__(self) -> None:
        from dear_ray.models.backbones import create_backbone

        self.cls = type(create_backbone(BACKBONE))
        self.original = self.cls.forward_features
        self.calls = self.clips = 0
        counter = self

        def counted(module, x):
            counter.calls += 1
            counter.clips += int(x.shape[0])
            return counter.original(module, x)

        self.cls.forward_features = counted

    def take(self) -> tuple[int, int]:
        out = (self.calls, self.clips)
        self.calls = self.clips = 0
        return out


def run_arm(cache: bool, args, root: Path, run_dir: Path, weights: Path, counter) -> dict:
    from dear_ray.config import load_config
    from dear_ray.train import driver

    top1 = {}
    counter.take()
    clock = time.perf_counter()
    for head in HEADS:
        for seed in range(args.seeds):
            cfg = load_config(probe_config(head, seed, cache=cache, root=root, run_dir=run_dir,
                                           weights=weights, args=args))
            top1[(head, seed)] = driver.run_training(cfg)["test_top1"]
    wall = time.perf_counter() - clock
    calls, clips = counter.take()
    return {"wall_s": wall, "calls": calls, "clips": clips, "top1": top1}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--size", type=int, default=128, help="frame size of the videos")
    parser.add_argument("--crop", type=int, default=112)
    parser.add_argument("--videos-per-class", type=int, default=4)
    args = parser.parse_args()
    os.environ.pop("MLFLOW_TRACKING_URI", None)
    logging.disable(logging.WARNING)
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    from dear_ray.data.synth import generate_dataset
    from dear_ray.models import build_recognizer

    tmp = Path(tempfile.mkdtemp(prefix="feature_cache_bench_"))
    root = tmp / "synth"
    generate_dataset(root, seed=0, workers=1, known_classes=3, unknown_classes=2,
                     videos_per_class=args.videos_per_class, frames=args.frames, size=args.size)
    weights = tmp / "backbone.pth"
    torch.manual_seed(0)
    torch.save({"state_dict": build_recognizer(num_classes=3, backbone=BACKBONE,
                                               head="softmax").state_dict()}, weights)
    counter = ForwardCounter()
    from dear_ray.config import load_config
    from dear_ray.train import driver

    # unmeasured: one live trial pays the imports and the first MLflow store
    driver.run_training(load_config(probe_config("softmax", 0, cache=False, root=root,
                                                 run_dir=tmp / "runs_warm", weights=weights,
                                                 args=args)))
    live = run_arm(False, args, root, tmp / "runs_live", weights, counter)
    cached = run_arm(True, args, root, tmp / "runs_cached", weights, counter)
    trials = len(HEADS) * args.seeds
    print(f"{len(HEADS)} heads x {args.seeds} seeds = {trials} frozen-probe trials, {args.epochs} "
          f"epochs, {BACKBONE} on {args.frames} x {args.crop}px clips, in-process, "
          f"{torch.get_num_threads()} torch threads")
    for name, arm in (("live", live), ("cached", cached)):
        print(f"  {name:7s} wall {arm['wall_s']:7.1f} s ({arm['wall_s'] / trials:5.2f} s a trial)"
              f"   backbone forwards {arm['calls']:5d} calls, {arm['clips']:6d} clips")
    print(f"  ratio live / cached: wall {live['wall_s'] / cached['wall_s']:.2f}x, backbone "
          f"calls {live['calls'] / max(cached['calls'], 1):.1f}x, clips "
          f"{live['clips'] / max(cached['clips'], 1):.1f}x")
    same = [k for k in live["top1"] if k[1] == 0]  # seed 0: the cached views are the live ones
    diff = max(abs(live["top1"][k] - cached["top1"][k]) for k in same)
    print(f"  largest |test top-1 live - cached| over the seed-0 trials (same training clips): "
          f"{diff:.3f}; seeds 1, 2 train on the seed-0 views when cached")
    print(f"  (data and runs in {tmp})")


if __name__ == "__main__":
    main()
