"""I3D-R50 training steps/s: fp32, bf16 autocast, + channels_last_3d; does the loader keep up.

Issue 14's GPU part, one run. The model, optimiser and data settings are the DEAR sweep's
``i3d_softmax`` trial (``jobs/sweeps/dear_ucf101.yaml``: ``i3d_r50`` + softmax head, 101 classes,
batch 8, dense 32x2 sampling in a 64-frame window, multi-scale 224 crop, flip; SGD lr 1e-3,
momentum 0.9, Nesterov, weight decay 1e-4, grad clip 40), with no pretrained checkpoint and the
lists pointed at videos this script writes (320x240 h264, 64 frames, with
``benchmarks/data_throughput.py``'s `write_videos`; the train list repeats them, the decoded-clip
cache is off, so every clip is decoded).

1. The step: `dear_ray.train.loop.train_one_epoch` with a `TrainingStep`, the optimiser and the
   schedule of `dear_ray.train.optim`, on one real uint8 batch of the train loader (the uint8
   handover of a GPU worker, ``(8, 3, 32, 224, 224)`` channels-last strides) fed again every step:
   each step copies the uint8 batch to the device, normalises it there, runs forward, backward,
   gradient clipping, SGD and the scheduler, as in a trial. ``--warmup`` steps, then ``--steps``
   timed between two ``torch.cuda.synchronize()``, a fresh model per variant: (a) fp32, (b) bf16
   autocast (``amp``), (c) bf16 autocast + channels_last_3d (model and clips, the driver's
   ``resources.channels_last_3d``; what a DEAR trial runs on a GPU); with ``--cudnn-benchmark``
   also (d) = (c) with ``torch.backends.cudnn.benchmark`` on (dear_ray never sets it). Peak memory
   is ``torch.cuda.max_memory_allocated`` of each variant.
2. The loader: `dear_ray.train.data.build_train_loader` (uint8 handover, ``data.num_workers`` = N
   forkserver workers, one OpenCV thread each) alone, for each N of ``--workers``: start-up (until
   the first batch) and clips/s from the moment every worker has delivered its first batch over
   the next 6 max(N, 1) batches; ``loader / step`` = that rate over the clips/s of the fastest
   of (a)-(c) (>= 1: the GPU is never starved).
3. End to end: `train_one_epoch` over the loader of the fastest N with that variant (after the
   warm-up steps; clips/s after every worker's first batch), and its ratio to the step alone.

The same script with ``--tiny`` is a CPU smoke test (i3d_tiny, 8x2 clips of 32 px, batch 2,
64x48 videos, 2 steps, loader in-process; autocast and channels_last are no-ops or slow there:
its numbers mean nothing). Without ``--device``: cuda when torch sees it, else the ``--tiny``
CPU mode (what ``make bench`` runs here). ``--device cuda`` without CUDA exits with code 2.

GPU session (one H200, 16 cores, no network; its python3 has torch but not PyAV, decord or
pydantic). Here, once, in the repository root (~52 MB of wheels; the tree travels with them,
64 MiB at most)::

    echo /.whl/ >> .git/info/exclude
    python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
      --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
      --platform manylinux2014_x86_64 --platform manylinux2010_x86_64 -d .whl \
      av==18.1.0 decord==0.6.0 pydantic==2.14.4 pydantic_core==2.50.5 annotated_types==0.8.0 \
      typing_inspection==0.4.5

then ``run`` with ``carry: [".whl"]``, ``timeout_s: 600`` and the command::

    set -o pipefail; python3 -m pip install -q --no-index --no-deps --no-compile \
      --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit; \
      export PYTHONPATH=/tmp/site:. PYTHONUNBUFFERED=1; nvidia-smi -L; df -h /dev/shm; \
      python3 benchmarks/gpu_training_step.py --cudnn-benchmark \
      --out $OUT/gpu_training_step.json 2>&1 | tee $OUT/gpu_training_step.log

(its torch is 2.11, not the project's 2.14.1: the header line prints the version). Worker batches
travel through /dev/shm (12 workers x 2 prefetched x 38.5 MB): if workers die with a bus error
or "No space left", add ``mount -o remount,size=8G /dev/shm;`` before the script.

Expected ~3-5 min with the defaults (48 videos written in ~20 s on 16 cores, four variants of 10 +
30 steps, five loader runs of 7 max(N, 1) batches, one end-to-end run); if a first try runs out of
time, rerun with ``--steps 15 --workers 0,4,12``. Locally: ``.venv/bin/python
benchmarks/gpu_training_step.py --tiny --device cpu``.
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
SWEEP = ROOT / "jobs" / "sweeps" / "dear_ucf101.yaml"
TRIAL = "i3d_softmax"
NUM_CLASSES = 101
# name, bf16 autocast, channels_last_3d, cudnn.benchmark
VARIANTS = (("fp32", False, False, False), ("bf16 autocast", True, False, False),
            ("bf16 + channels_last_3d", True, True, False))
BENCHMARK_VARIANT = ("bf16 + cl3d + cudnn.benchmark", True, True, True)


@dataclass(frozen=True)
class Sizes:
    """What `--tiny` changes: the backbone, the batch, the clip and the videos."""

    backbone: str
    batch: int
    clip_len: int
    sample_range: int
    crop: int
    scale_short: int
    width: int
    height: int
    frames: int


FULL = Sizes("i3d_r50", 8, 32, 64, 224, 256, 320, 240, 64)
TINY = Sizes("i3d_tiny", 2, 8, 16, 32, 40, 64, 48, 20)


def experiment_config(sizes: Sizes, root: Path, list_file: str):
    """The sweep's I3D softmax trial, on the videos under `root` and at `sizes`."""
    from dear_ray.config.data import DataConfig
    from dear_ray.tune.sweep import expand_trials, load_sweep

    plan = next(p for p in expand_trials(load_sweep(SWEEP)) if p.name == TRIAL)
    overrides = {
        "data.data_root": str(root), "data.train_list": list_file, "data.val_list": None,
        "data.test_list": None, "data.test_shifted_list": None, "data.unknown": {},
        "data.classes_file": None, "data.num_classes": NUM_CLASSES, "model.pretrained": None,
        "eval.every_n_epochs": 0,
        "model.backbone": sizes.backbone, "data.batch_size": sizes.batch,
        "data.clip_len": sizes.clip_len, "data.sample_range": sizes.sample_range,
        "data.crop_size": sizes.crop, "data.scale_short": sizes.scale_short,
    }
    if "decoded_cache_mb" in DataConfig.model_fields:  # every clip decoded, as in a real epoch
        overrides["data.decoded_cache_mb"] = 0
    return plan.config.override(overrides)


def write_dataset(root: Path, sizes: Sizes, videos: int, lines: int) -> str:
    """`videos` h264 clips and a train list of `lines` lines cycling over them; the list's name."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from data_throughput import write_videos  # the data benchmark's video maker

    paths = write_videos(root, videos, sizes.frames, sizes.width, sizes.height)
    (root / "train.txt").write_text(
        "".join(f"{paths[i % videos].name} {i % NUM_CLASSES}\n" for i in range(lines)))
    return "train.txt"


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _trial_parts(cfg, device: torch.device, channels_last: bool, iters: int):
    """The driver's model, `TrainingStep`, optimiser and schedule (dear_ray.train.driver)."""
    from dear_ray.models import build_recognizer
    from dear_ray.train.loop import TrainingStep
    from dear_ray.train.optim import build_optimizer, build_scheduler

    torch.manual_seed(cfg.seed)
    m = cfg.model
    model = build_recognizer(backbone=m.backbone, head=m.head, num_classes=NUM_CLASSES,
                             backbone_options=m.backbone_options, head_options=m.head_options,
                             dropout=m.dropout)
    if channels_last:
        from dear_ray.train.loop import to_channels_last_3d

        model = to_channels_last_3d(model)  # as the Train worker does
    model = model.to(device)
    optimizer = build_optimizer(model, cfg.optim)
    return TrainingStep(model), optimizer, build_scheduler(optimizer, cfg.optim, iters)


def _epoch(cfg, parts, batches, device, amp: bool, channels_last: bool):
    from dear_ray.train.loop import train_one_epoch

    step, optimizer, scheduler = parts
    return train_one_epoch(step, batches, optimizer, scheduler, epoch=0, anneal=0.0,
                           global_step=0, device=device, grad_clip=cfg.optim.grad_clip, amp=amp,
                           channels_last=channels_last)


def time_step(cfg, batch: dict, device: torch.device, variant: tuple, *, warmup: int,
              steps: int) -> dict:
    """steps/s, clips/s and peak GiB of one variant on the same batch every step."""
    name, amp, channels_last, benchmark = variant
    torch.backends.cudnn.benchmark = benchmark
    if device.type == "cuda":
        gc.collect()
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    parts = _trial_parts(cfg, device, channels_last, warmup + steps)
    _epoch(cfg, parts, [batch] * warmup, device, amp, channels_last)
    _sync(device)
    start = time.perf_counter()
    result = _epoch(cfg, parts, [batch] * steps, device, amp, channels_last)
    _sync(device)
    seconds = time.perf_counter() - start
    n = len(batch["label"])
    peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None
    del parts
    torch.backends.cudnn.benchmark = False
    return {"variant": name, "amp": amp, "channels_last_3d": channels_last,
            "cudnn_benchmark": benchmark, "steps": steps, "seconds": seconds,
            "steps_per_s": steps / seconds, "clips_per_s": steps * n / seconds,
            "peak_gib": peak, "final_loss": result.metrics.get("loss")}


class _Clock:
    """Iterates `loader` for `skip + timed` batches; `rate()`: clips/s of the timed ones, from
    the moment batch `skip` was handed out (every worker has delivered one) to `stop()`."""

    def __init__(self, loader, skip: int, timed: int) -> None:
        self.loader, self.skip, self.timed = loader, skip, timed
        self.opened = time.perf_counter()
        self.first = self.start = self.end = 0.0
        self.clips = 0

    def __iter__(self):
        it = iter(self.loader)
        for i in range(self.skip + self.timed):
            batch = next(it)
            if i == 0:
                self.first = time.perf_counter()
            if i == self.skip:
                self.start = time.perf_counter()
            if i >= self.skip:
                self.clips += len(batch["label"])
            yield batch
        del it  # shuts the workers down

    def stop(self) -> None:
        self.end = time.perf_counter()

    def rate(self) -> float:
        return self.clips / (self.end - self.start)


def _loader(cfg, workers: int):
    from dear_ray.train.data import build_train_loader

    loader, _ = build_train_loader(cfg.override({"data.num_workers": workers}),
                                   num_classes=NUM_CLASSES, handover="uint8")
    loader.dataset.set_epoch(0)
    return loader


def loader_batches(workers: int) -> tuple[int, int]:
    """(skipped, timed) batches of a loader run with `workers` workers."""
    return max(workers, 1), 6 * max(workers, 1)


def time_loader(cfg, workers: int) -> dict:
    """The train loader alone: start-up seconds and steady clips/s."""
    skip, timed = loader_batches(workers)
    clock = _Clock(_loader(cfg, workers), skip, timed)
    for _ in clock:
        pass
    clock.stop()
    return {"workers": workers, "startup_s": clock.first - clock.opened,
            "clips": clock.clips, "clips_per_s": clock.rate()}


def time_end_to_end(cfg, batch: dict, device: torch.device, variant: tuple, workers: int, *,
                    warmup: int) -> dict:
    """`train_one_epoch` over the real loader, after `warmup` steps on `batch`: clips/s once
    every worker has delivered."""
    name, amp, channels_last, benchmark = variant
    torch.backends.cudnn.benchmark = benchmark
    skip, timed = loader_batches(workers)
    parts = _trial_parts(cfg, device, channels_last, warmup + skip + timed)
    _epoch(cfg, parts, [batch] * warmup, device, amp, channels_last)
    clock = _Clock(_loader(cfg, workers), skip, timed)
    _epoch(cfg, parts, clock, device, amp, channels_last)
    _sync(device)
    clock.stop()
    torch.backends.cudnn.benchmark = False
    return {"variant": name, "workers": workers, "clips": clock.clips,
            "clips_per_s": clock.rate()}


def _environment(device: torch.device) -> dict:
    env = {"torch": torch.__version__, "device": str(device),
           "cudnn_allow_tf32": torch.backends.cudnn.allow_tf32,
           "matmul_allow_tf32": torch.backends.cuda.matmul.allow_tf32}
    if device.type == "cuda":
        env.update(gpu=torch.cuda.get_device_name(device), cuda=torch.version.cuda,
                   cudnn=torch.backends.cudnn.version())
    return env


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=("cuda", "cpu"),
                        help="default: cuda if available, else cpu with --tiny")
    parser.add_argument("--tiny", action="store_true", help="CPU smoke mode (i3d_tiny, tiny clips)")
    parser.add_argument("--steps", type=int, help="timed steps a variant (default 30; tiny 2)")
    parser.add_argument("--warmup", type=int, help="untimed steps first (default 10; tiny 1)")
    parser.add_argument("--workers", help="DataLoader worker counts (default 0,2,4,8,12; tiny 0)")
    parser.add_argument("--videos", type=int, help="distinct videos written (default 48; tiny 4)")
    parser.add_argument("--cudnn-benchmark", action="store_true",
                        help="add variant (d): (c) with torch.backends.cudnn.benchmark on")
    parser.add_argument("--out", type=Path, help="also write the results here as JSON")
    args = parser.parse_args(argv)
    if args.device is None:
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
        if args.device == "cpu" and not args.tiny:
            print("gpu_training_step: torch sees no CUDA device: running the --tiny CPU smoke "
                  "mode (pass --device cpu for the full sizes on the CPU)")
            args.tiny = True
    tiny = args.tiny
    args.steps = args.steps or (2 if tiny else 30)
    args.warmup = args.warmup if args.warmup is not None else (1 if tiny else 10)
    args.workers = [int(w) for w in (args.workers or ("0" if tiny else "0,2,4,8,12")).split(",")]
    args.videos = args.videos or (4 if tiny else 48)
    if min(args.steps, args.videos) < 1 or args.warmup < 0 or min(args.workers) < 0:
        parser.error("--steps and --videos must be >= 1, --warmup and --workers >= 0")
    return args


def _print_tables(res: dict) -> None:
    s, env = res["settings"], res["environment"]
    print(f"\n{s['trial']} ({s['backbone']} + {s['head']}, {NUM_CLASSES} classes), batch "
          f"{s['batch']} of uint8 clips {tuple(s['clip_shape'])}, {s['optimizer']}; "
          f"{env.get('gpu', env['device'])}, torch {env['torch']}, cuDNN TF32 "
          f"{env['cudnn_allow_tf32']}; {s['warmup']} warm-up + {s['steps']} timed steps")
    if env["device"] == "cpu":
        print("(CPU: dear_ray's autocast is off there, so 'bf16' runs fp32; a smoke test only)")
    base = res["step"][0]["clips_per_s"]
    print(f"{'step variant':32s} {'steps/s':>8s} {'clips/s':>8s} {'vs fp32':>8s} {'peak GiB':>9s}")
    for r in res["step"]:
        peak = f"{r['peak_gib']:9.2f}" if r["peak_gib"] is not None else f"{'n/a':>9s}"
        print(f"{r['variant']:32s} {r['steps_per_s']:8.2f} {r['clips_per_s']:8.1f} "
              f"{r['clips_per_s'] / base:7.2f}x {peak}")
    best = res["fastest"]
    print(f"\nloader alone (uint8 handover) vs the step '{best['variant']}' "
          f"({best['clips_per_s']:.1f} clips/s)")
    print(f"{'workers':>7s} {'start-up s':>10s} {'clips':>6s} {'clips/s':>8s} {'loader/step':>11s}")
    for r in res["loader"]:
        print(f"{r['workers']:7d} {r['startup_s']:10.2f} {r['clips']:6d} {r['clips_per_s']:8.1f} "
              f"{r['loader_over_step']:10.2f}x")
    e = res["end_to_end"]
    print(f"\nend to end: train_one_epoch over the loader ({e['workers']} workers, "
          f"'{e['variant']}'): {e['clips_per_s']:.1f} clips/s = {e['over_step']:.2f}x the step "
          "alone")


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        print("gpu_training_step: --device cuda, but torch sees no CUDA device "
              f"(torch {torch.__version__}); use --device cpu (with --tiny for a smoke test)",
              file=sys.stderr)
        return 2
    device = torch.device(args.device)
    sizes = TINY if args.tiny else FULL
    threads = torch.get_num_threads()
    if args.tiny:  # a smoke test on a shared machine: one intra-op thread contends least
        torch.set_num_threads(1)
    try:
        return _run(args, device, sizes)
    finally:
        torch.set_num_threads(threads)


def _run(args: argparse.Namespace, device: torch.device, sizes: Sizes) -> int:
    variants = list(VARIANTS) + ([BENCHMARK_VARIANT] if args.cudnn_benchmark else [])
    lines = sizes.batch * (sum(loader_batches(max(args.workers))) + 2)
    with tempfile.TemporaryDirectory(prefix="gpu_step_") as tmp:
        t0 = time.perf_counter()
        cfg = experiment_config(sizes, Path(tmp),
                                write_dataset(Path(tmp), sizes, args.videos, lines))
        print(f"wrote {args.videos} videos {sizes.width}x{sizes.height} x {sizes.frames} frames "
              f"({lines} list lines) and loaded the config in {time.perf_counter() - t0:.1f} s")
        batch = next(iter(_loader(cfg, 0)))
        step = []
        for v in variants:
            step.append(time_step(cfg, batch, device, v, warmup=args.warmup, steps=args.steps))
            print(f"  step {v[0]}: {step[-1]['clips_per_s']:.1f} clips/s", flush=True)
        fastest = max(step[:len(VARIANTS)], key=lambda r: r["clips_per_s"])
        loader = []
        for n in args.workers:
            loader.append(time_loader(cfg, n))
            loader[-1]["loader_over_step"] = loader[-1]["clips_per_s"] / fastest["clips_per_s"]
            print(f"  loader {n} workers: {loader[-1]['clips_per_s']:.1f} clips/s", flush=True)
        best_n = max(loader, key=lambda r: r["clips_per_s"])["workers"]
        variant = next(v for v in VARIANTS if v[0] == fastest["variant"])
        e2e = time_end_to_end(cfg, batch, device, variant, best_n, warmup=args.warmup)
        e2e["over_step"] = e2e["clips_per_s"] / fastest["clips_per_s"]
    results = {
        "settings": {"trial": f"{SWEEP.relative_to(ROOT)}:{TRIAL}", "tiny": args.tiny,
                     "backbone": cfg.model.backbone, "head": cfg.model.head, "batch": sizes.batch,
                     "clip_shape": list(batch["clip"].shape[1:]),
                     "optimizer": (f"SGD lr {cfg.optim.lr} m {cfg.optim.momentum} nesterov "
                                   f"{cfg.optim.nesterov} wd {cfg.optim.weight_decay} clip "
                                   f"{cfg.optim.grad_clip}"),
                     "steps": args.steps, "warmup": args.warmup, "videos": args.videos,
                     "sizes": asdict(sizes)},
        "environment": _environment(device), "step": step, "fastest": fastest,
        "loader": loader, "end_to_end": e2e,
        "seconds": time.perf_counter() - t0,
    }
    _print_tables(results)
    print(f"total {results['seconds']:.0f} s")
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=2))
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
