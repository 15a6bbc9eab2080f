"""Wall time of one trial through the sweep machinery vs the same training loop called directly.

Both sides train the same tiny model on the same synthetic data for the same epochs, then score
every evaluation split into score stores:

- ``direct``: one process, no Ray, no MLflow: the recognizer, loader, optimiser and schedule of
  the config, ``train_one_epoch`` per epoch, then ``evaluate_splits`` (the functions the Ray Train
  worker calls);
- ``sweep``: ``run_sweep`` on a two-trial sweep (two seeds), one trial at a time: local
  ``ray.init`` (dashboard on), Ray Tune, the trial driver, Ray Train's ``TorchTrainer`` with one
  worker, per-epoch checkpoints and reports, MLflow parent/child runs, and the results aggregator
  (tables and plots) at the end;
- ``in-process``: the same sweep with ``resources.num_workers: 0``: each trial's loop runs in its
  Tune trial process (no Ray Train worker group), with the same reports, checkpoints and runs.

Each trial's time is then broken down from the wall-clock marks every process of a trial writes
(`dear_ray.timeline`: Tune's trial driver, the Train workers) and from Ray Train's controller log
(its own "[Worker Group Initialization] ... in N s" lines), and each span is labelled as Ray's own
(scheduling, actor and worker-group start, shut-down: not ours to cut from outside), ours
(imports, MLflow, model and loader set-up, the last report) or the work. The first trial pays
every cold start; the second shows a sweep's steady state (Tune reuses the trial driver's
process). The ratio sweep / direct shrinks as training gets longer because the fixed costs do
not grow with epochs.

Run: ``.venv/bin/python benchmarks/orchestration_overhead.py [--epochs 2] [--head edl]
[--data DIR] [--modes workers,in-process]`` (without ``--data`` a small synthetic data set is generated into a temporary folder).
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


# (label, from mark, to mark, whose it is): consecutive spans of one trial's timeline; a trial
# after the first starts when the previous one's driver returned (the previous `!` marks)
SPANS = [
    ("Tune: trial scheduled -> trial driver runs", "<start>", "trial_driver_start", "Ray"),
    ("trial driver: import torch, MLflow, dear_ray", "trial_driver_start",
     "trial_driver_imports_done", "ours"),
    ("trial driver: config, checks", "trial_driver_imports_done", "mlflow_run_open_start", "ours"),
    ("trial driver: MLflow child run, params, config", "mlflow_run_open_start",
     "mlflow_run_ready", "ours"),
    ("TorchTrainer built", "mlflow_run_ready", "train_fit_start", "ours"),
    ("Train: controller + worker group start -> worker fn", "train_fit_start", "worker_start",
     "Ray"),
    ("worker: imports, process group, config", "worker_start", "worker_imports_done", "ours"),
    ("worker: model", "worker_imports_done", "worker_model_built", "ours"),
    ("worker: loaders, optimiser, checkpoint", "worker_model_built", "worker_loaders_built",
     "ours"),
    ("worker: loaders -> first epoch (MLflow opens in a thread)", "worker_loaders_built",
     "worker_ready", "ours"),
    ("training epochs (the work)", "worker_ready", "!epoch_trained", "work"),
    ("evaluation + stores (the work)", "!epoch_trained", "evaluation_done", "work"),
    ("last report + checkpoint", "evaluation_done", "!epoch_reported", "ours"),
    ("Train: worker fn done -> fit returns", "!epoch_reported", "train_fit_done", "Ray"),
    ("trial driver: close run", "train_fit_done", "trial_driver_done", "ours"),
    ("Tune: trial done -> fit returns", "trial_driver_done", "tune_fit_done", "Ray"),
]


def breakdown(sweep_dir: Path, trial: str, *, last: bool) -> list[tuple[str, float, str]]:
    """(label, seconds, whose) per span of the trial's timeline (`dear_ray.timeline`); a
    `!name` end or start is the LAST mark of that name (the last epoch)."""
    from dear_ray import timeline

    events = timeline.read(sweep_dir, trial)
    begin = timeline.first(events, "trial_driver_start") or 0.0
    # the trial was scheduled when Tune started, or when the trial before it finished
    before = [e["t"] for e in timeline.read(sweep_dir, timeline.SWEEP_FILE)
              if e["event"] == "tune_fit_start" and e["t"] <= begin]
    for other in (sweep_dir / timeline.FOLDER).glob("*.jsonl"):
        if other.stem not in (trial, timeline.SWEEP_FILE):
            before += [e["t"] for e in timeline.read(sweep_dir, other.stem)
                       if e["event"] == "trial_driver_done" and e["t"] <= begin]
    events.append({"event": "<start>", "t": max(before, default=begin)})
    if last:  # Tune's shut-down after the last trial
        events += [e for e in timeline.read(sweep_dir, timeline.SWEEP_FILE)
                   if e["event"] == "tune_fit_done"]
    events.sort(key=lambda e: e["t"])

    def at(name: str) -> float | None:
        if name.startswith("!"):
            return timeline.last(events, name[1:])
        return timeline.first(events, name)

    rows = []
    for label, start, end, whose in SPANS:
        a, b = at(start), at(end)
        if a is not None and b is not None:
            rows.append((label, b - a, whose))
    return rows


def ray_train_phases(sweep_dir: Path, trial: str) -> list[tuple[str, float]]:
    """Ray Train's own start-up phases, from its controller log in the sweep's private Ray
    (`dear_ray.tune.local_ray`): the controller actor's start (from our `train_fit_start` mark to
    its first line), each "[Worker Group Initialization] ... in N s" line, and shut-down."""
    import datetime
    import json
    import re

    from dear_ray import timeline
    from dear_ray.tune.local_ray import private_temp_dir

    logs = sorted((private_temp_dir(sweep_dir) / "session_latest" / "logs" / "train")
                  .glob("ray-train-sys-controller-*.log"))
    fit = timeline.first(timeline.read(sweep_dir, trial), "train_fit_start")
    if not logs or fit is None:
        return []

    def read(log: Path) -> list[tuple[float, str]]:
        lines = []
        for raw in log.read_text().splitlines():
            try:
                entry = json.loads(raw)
                stamp = datetime.datetime.strptime(entry["asctime"], "%Y-%m-%d %H:%M:%S,%f")
            except (ValueError, KeyError):
                continue
            lines.append((stamp.timestamp(), entry.get("message", "")))
        return lines

    # this trial's controller: the first log that starts after its fit started
    candidates = [lines for lines in map(read, logs) if lines and lines[0][0] >= fit - 0.5]
    if not candidates:
        return []
    lines = min(candidates, key=lambda lines: lines[0][0])
    out = [("controller actor starts (fit -> its first log line)", lines[0][0] - fit)]
    for when, message in lines:
        found = re.match(r"\[Worker Group Initialization\] (.*?) in ([0-9.]+)s", message)
        if found and "callbacks" not in found.group(1) and "completed" not in found.group(1):
            out.append((found.group(1), float(found.group(2))))
        elif message.startswith("Requesting resources"):
            start_request = when
        elif message.startswith("Attempting to start training worker group"):
            out.append(("resource request, placement-group cleaner actor", when - start_request))
    return out


def train_sweep(cfg_dict: dict, name: str = "bench_sweep") -> tuple[float, dict[str, float], list]:
    """The same config as a one-trial sweep through `run_sweep`; returns seconds, the runner's
    parts and the trial's timeline breakdown."""
    from dear_ray.tune import run_sweep
    from dear_ray.tune.sweep import parse_sweep

    # two trials, one at a time: the first pays every cold start, the second shows the steady
    # state of a sweep (Tune reuses the finished trial's driver process)
    spec = parse_sweep({"name": name, "base": cfg_dict,
                        "grid": {"seed": [0, 1]}, "max_concurrent_trials": 1})
    start = time.perf_counter()
    result = run_sweep(spec)
    seconds = time.perf_counter() - start
    if result.failed:
        raise RuntimeError(f"the benchmark trials failed: {result.failed}")
    trials = sorted(result.trials, key=lambda t: _started(result.sweep_dir, t))
    return seconds, result.timings, [
        (trial, breakdown(result.sweep_dir, trial, last=trial == trials[-1]),
         ray_train_phases(result.sweep_dir, trial))
        for trial in trials]


def _started(sweep_dir: Path, trial: str) -> float:
    from dear_ray import timeline

    return timeline.first(timeline.read(sweep_dir, trial), "trial_driver_start") or 0.0


MODES = {"workers": 1, "in-process": 0}  # resources.num_workers of each mode


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--head", default="edl")
    parser.add_argument("--data", type=Path, default=None, help="an existing synthetic data set")
    parser.add_argument("--modes", default="workers,in-process",
                        help="comma-separated: workers (a one-worker Ray Train worker group a "
                             "trial), in-process (resources.num_workers 0)")
    args = parser.parse_args()
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    unknown = sorted(set(modes) - set(MODES))
    if unknown:
        parser.error(f"--modes: unknown {unknown}; expected some of {sorted(MODES)}")
    torch.set_num_threads(1)  # the Ray Train worker (1 CPU) gets one thread too

    from dear_ray.config import load_config

    runs = {}
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
        for mode in modes:
            mode_cfg = {**cfg_dict, "resources": {**cfg_dict["resources"],
                                                  "num_workers": MODES[mode]}}
            runs[mode] = train_sweep(mode_cfg, name=f"bench_{mode.replace('-', '_')}")
    print(f"two trials one at a time, {args.epochs} epoch(s) each, head {args.head}, i3d_tiny "
          f"on {data}")
    print(f"  direct loop, one trial (one process, no Ray/MLflow): {direct:7.1f} s")
    steady = {mode: print_sweep(mode, *runs[mode], direct=direct) for mode in modes}
    if len(steady) == 2:
        (a, (fa, wa)), (b, (fb, wb)) = steady.items()
        print(f"  fixed cost per trial, steady state: {a} {fa:.1f} s, {b} {fb:.1f} s of spans "
              f"(ratio {b}/{a} {fb / fa:.2f}x); wall over the direct loop {wa:.1f} s vs "
              f"{wb:.1f} s")


def print_sweep(mode: str, sweep: float, parts: dict[str, float], trials: list, *,
                direct: float) -> tuple[float, float]:
    """Print one mode's sweep and its trials' breakdowns; (fixed cost, wall over the direct
    loop) of its last trial."""
    workers = "one Ray Train worker a trial" if mode == "workers" else \
        "the loop in the Tune trial process (num_workers 0)"
    print(f"  [{mode}] through run_sweep, both trials (Ray Tune + {workers} + MLflow + report): "
          f"{sweep:7.1f} s")
    print("    of which " + ", ".join(f"{k} {v:.1f}" for k, v in parts.items()))
    print(f"    ratio sweep / (2 x direct): {sweep / (2 * direct):.2f}x  (fixed overhead "
          f"{sweep - 2 * direct:.1f} s)")
    steady = (0.0, 0.0)
    for n, (trial, spans, phases) in enumerate(trials):
        print(f"    trial {n + 1} ({trial}{', cold start' if n == 0 else ''}), from "
              "dear_ray.timeline marks:")
        for label, seconds, whose in spans:
            print(f"      {label:<56} {seconds:6.1f} s  [{whose}]")
        if phases:
            print("      within Ray Train's start (its controller log):")
            for label, seconds in phases:
                print(f"        {label:<54} {seconds:6.1f} s")
        per_trial = sum(s for _, s, whose in spans if whose != "work")
        ray_own = sum(s for _, s, whose in spans if whose == "Ray")
        wall = sum(s for _, s, _ in spans)
        print(f"      fixed cost (every span but the work): {per_trial:.1f} s, of which Ray's own "
              f"scheduling / start-up / shut-down {ray_own:.1f} s and ours "
              f"{per_trial - ray_own:.1f} s")
        print(f"      trial wall {wall:.1f} s - direct loop {direct:.1f} s = {wall - direct:.1f} s "
              "(also counts what overlaps the work: rank 0's MLflow open, in a thread)")
        steady = (per_trial, wall - direct)
    print(f"    fixed cost per trial in a sweep (the last trial): {steady[0]:.1f} s of spans, "
          f"{steady[1]:.1f} s of wall over the direct loop")
    print(f"    once per sweep: setup {parts.get('setup_s', 0):.1f} s, ray.init "
          f"{parts.get('ray_init_s', 0):.1f} s, report {parts.get('report_s', 0):.1f} s")
    return steady


if __name__ == "__main__":
    main()
