"""The `dear-ray` command.

Each subcommand parses its arguments here and calls one public function of the package; imports
are lazy so that `dear-ray --help` does not import torch or Ray.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path


class CliError(Exception):
    """A user error reported as one line on stderr with exit status 2."""


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text}")
    return value


def _name_list(text: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise argparse.ArgumentTypeError(f"expected comma-separated trial names, got {text!r}")
    return names


def _add_data_commands(sub: argparse._SubParsersAction) -> None:
    data = sub.add_parser("data", help="data sets: the synthetic generator, annotation lists, checks")
    dsub = data.add_subparsers(dest="data_command", required=True, metavar="COMMAND")

    synth = dsub.add_parser("synth", help="generate the synthetic biased-actions data set (SPEC 5)")
    synth.add_argument("--out", type=Path, required=True, help="output folder")
    synth.add_argument("--seed", type=int, default=0)
    synth.add_argument("--known-classes", type=_positive_int, default=None)
    synth.add_argument("--unknown-classes", type=int, default=None)
    synth.add_argument(
        "--videos-per-class", type=_positive_int, default=None,
        help="training videos per known class (the other splits scale with it)",
    )
    synth.add_argument("--frames", type=_positive_int, default=None, help="frames per video")
    synth.add_argument("--size", type=_positive_int, default=None, help="frame height and width (px)")
    synth.add_argument("--bias", type=float, default=None, help="P(scene matches class) in train/val/test")
    synth.add_argument("--workers", type=_positive_int, default=2)
    synth.add_argument("--force", action="store_true", help="overwrite a non-empty output folder")
    synth.set_defaults(func=_cmd_data_synth)

    summary = dsub.add_parser("summary", help="print the summary of a generated synthetic data set")
    summary.add_argument("root", type=Path)
    summary.set_defaults(func=_cmd_data_summary)

    lists = dsub.add_parser("lists", help="annotation lists for UCF-101, HMDB-51, MiT-v2, Kinetics, Diving48")
    lists.add_argument("dataset", help="ucf101, hmdb51, mit_v2, kinetics400, minikinetics200, diving48")
    lists.add_argument("--root", type=Path, required=True, help="the data set's folder (videos + official files)")
    lists.add_argument("--out", type=Path, required=True, help="where to write the lists")
    lists.add_argument("--split", type=int, default=1, help="official split (UCF-101 / HMDB-51: 1-3)")
    lists.add_argument("--relative-to", type=Path, default=None,
                       help="write video paths relative to this shared data root")
    lists.set_defaults(func=_cmd_data_lists)

    check = dsub.add_parser("check", help="open every video of a list and report the bad ones")
    check.add_argument("list_file", type=Path)
    check.add_argument("--root", type=Path, required=True, help="data root the list's paths are under")
    check.add_argument("--workers", type=_positive_int, default=2)
    check.add_argument("--csv", type=Path, default=None, help="also write the bad files as CSV")
    check.set_defaults(func=_cmd_data_check)


def _cmd_data_synth(args: argparse.Namespace) -> int:
    from dear_ray.data.synth import generate_dataset, summarize_dataset

    options = {
        "known_classes": args.known_classes,
        "unknown_classes": args.unknown_classes,
        "videos_per_class": args.videos_per_class,
        "frames": args.frames,
        "size": args.size,
        "bias": args.bias,
    }
    options = {k: v for k, v in options.items() if v is not None}
    if args.out.exists() and any(args.out.iterdir()) and not args.force:
        raise CliError(f"{args.out} exists and is not empty; pass --force to overwrite it")
    generate_dataset(args.out, seed=args.seed, workers=args.workers, **options)
    print(summarize_dataset(args.out))
    return 0


def _cmd_data_summary(args: argparse.Namespace) -> int:
    from dear_ray.data.synth import summarize_dataset

    print(summarize_dataset(args.root))
    return 0


def _add_run_commands(sub: argparse._SubParsersAction) -> None:
    train = sub.add_parser("train", help="one training run on Ray Train (no Tune)")
    train.add_argument("config", type=Path, help="experiment config YAML")
    train.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="FIELD=VALUE",
        help="override a config field by dotted path, e.g. --set optim.lr=0.01 (YAML value)",
    )
    train.set_defaults(func=_cmd_train)

    sweep = sub.add_parser("sweep", help="run a sweep YAML with Ray Tune, then aggregate the results")
    sweep.add_argument("sweep", type=Path, help="sweep YAML, e.g. jobs/sweeps/demo.yaml")
    sweep.add_argument("--dry-run", action="store_true", help="validate and list the trials, run nothing")
    sweep.add_argument("--resume", action="store_true", help="continue an interrupted sweep")
    sweep.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="FIELD=VALUE",
        help="override a field of the sweep's base config, e.g. --set data.data_root=/mnt/data")
    sweep.add_argument("--trials", type=_name_list, default=None, metavar="NAME,NAME",
                       help="run only these trials (names as --dry-run lists them)")
    sweep.set_defaults(func=_cmd_sweep)

    export = sub.add_parser("export", help="a training checkpoint's weights as an MMAction2-style .pth")
    export.add_argument("checkpoint", type=Path, help="a checkpoint_epoch_* folder of a dear_ray run")
    export.add_argument("out", type=Path, help="the .pth file to write")
    export.set_defaults(func=_cmd_export)

    report = sub.add_parser("report", help="re-run the results aggregator of a finished sweep")
    report.add_argument("sweep", type=Path, help="the sweep YAML the sweep ran from")
    report.set_defaults(func=_cmd_report)

    evaluate = sub.add_parser("evaluate", help="metrics table and plots from score stores (parquet)")
    evaluate.add_argument("stores", type=Path, nargs="+", help="score store files or folders of them")
    evaluate.add_argument("--out", type=Path, required=True, help="output folder for tables and plots")
    evaluate.add_argument("--score", dest="scores", action="append", default=None,
                          help="uncertainty score(s) to evaluate (default: each method's own)")
    evaluate.add_argument("--trials", type=_positive_int, default=10, help="subsets per openness point")
    evaluate.add_argument("--seed", type=int, default=0, help="seed of the unknown-class subsets")
    evaluate.set_defaults(func=_cmd_evaluate)

    demo = sub.add_parser("demo", help="the main job: synthetic data, the demo sweep, the results table")
    demo.add_argument("--data", type=Path, default=Path("data/synth"), help="synthetic data folder")
    demo.add_argument("--sweep", type=Path, default=Path("jobs/sweeps/demo.yaml"))
    demo.set_defaults(func=_cmd_demo)


def _parse_overrides(items: list[str]) -> dict:
    import yaml

    overrides = {}
    for item in items:
        field, sep, value = item.partition("=")
        if not sep or not field:
            raise CliError(f"--set expects FIELD=VALUE, got {item!r}")
        overrides[field.strip()] = yaml.safe_load(value)
    return overrides


def _cmd_train(args: argparse.Namespace) -> int:
    from dear_ray.config import load_config
    from dear_ray.train.driver import run_training

    cfg = load_config(args.config, overrides=_parse_overrides(args.overrides))
    result = run_training(cfg)
    for key, value in sorted(result.items()):
        print(f"{key}: {value}")
    return 0


def _cmd_sweep(args: argparse.Namespace) -> int:
    from dear_ray.tune import expand_trials, format_trials, load_sweep, restrict_sweep, run_sweep

    spec = load_sweep(args.sweep)
    if args.overrides or args.trials:
        spec = restrict_sweep(spec, overrides=_parse_overrides(args.overrides), trials=args.trials)
    if args.dry_run:
        print(format_trials(expand_trials(spec), spec))
        return 0
    result = run_sweep(spec, resume=args.resume)
    from dear_ray.demo import print_results

    print_results(result)
    return 1 if result.failed else 0


def _cmd_export(args: argparse.Namespace) -> int:
    from dear_ray.models import export_weights

    out = export_weights(args.checkpoint, args.out)
    print(f"wrote {out} (model weights of {args.checkpoint}; load it with model.pretrained)")
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    from dear_ray.demo import format_table
    from dear_ray.tracking.aggregate import report_sweep
    from dear_ray.tracking.mlflow_runs import resolve_tracking_uri
    from dear_ray.tune import load_sweep
    from dear_ray.tune.runner import experiment_name

    spec = load_sweep(args.sweep)
    table = report_sweep(spec.sweep_dir, tracking_uri=resolve_tracking_uri(spec.base),
                         experiment=experiment_name(spec))
    print(format_table(table))
    return 0


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from dear_ray.demo import format_table
    from dear_ray.metrics.evaluate import evaluate_stores

    paths = []
    for path in args.stores:
        if path.is_dir():
            paths.extend(sorted(path.rglob("*.parquet")))
        elif path.is_file():
            paths.append(path)
        else:
            raise CliError(f"{path}: no such score store file or folder")
    if not paths:
        raise CliError(f"no score stores (*.parquet) under {', '.join(map(str, args.stores))}")
    table = evaluate_stores(paths, args.out, scores=args.scores, num_trials=args.trials, seed=args.seed)
    print(format_table(table))
    print(f"tables and plots written to {args.out}")
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from dear_ray.demo import run_demo

    result = run_demo(data_dir=args.data, sweep_file=args.sweep)
    return 1 if result.failed else 0


def _cmd_data_lists(args: argparse.Namespace) -> int:
    from dear_ray.data.lists import build_lists

    written = build_lists(args.dataset, root=args.root, out_dir=args.out, split=args.split,
                          relative_to=args.relative_to)
    for key, path in written.items():
        print(f"{key}: {path}")
    return 0


def _cmd_data_check(args: argparse.Namespace) -> int:
    from dear_ray.data.check import check_videos

    report = check_videos(args.list_file, args.root, workers=args.workers, csv_path=args.csv)
    print(report.format())
    return 1 if report.num_bad else 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dear-ray",
        description="Open-set and debiased video action recognition (DEAR, SDN) on Ray.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_data_commands(sub)
    _add_run_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except CliError as err:
        print(f"dear-ray: error: {err}", file=sys.stderr)
        return 2
    except (ValueError, FileNotFoundError, RuntimeError) as err:
        # Configuration, data and tracking errors carry messages that name the file, field or
        # value at fault: show that line, not a traceback (DEAR_RAY_DEBUG=1 shows it).
        if os.environ.get("DEAR_RAY_DEBUG"):
            raise
        print(f"dear-ray: error: {type(err).__name__}: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
