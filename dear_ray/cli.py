"""The `dear-ray` command.

Each subcommand parses its arguments here and calls one public function of the package; imports
are lazy so that `dear-ray --help` does not import torch or Ray.
"""

from __future__ import annotations

import argparse
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dear-ray",
        description="Open-set and debiased video action recognition (DEAR, SDN) on Ray.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_data_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except CliError as err:
        print(f"dear-ray: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
