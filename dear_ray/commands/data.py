"""`dear-ray data ...`: the synthetic generator, summaries, annotation lists, checks, overlap."""

from __future__ import annotations

import argparse
from pathlib import Path

from dear_ray.commands._common import CliError, _positive_int


def add_parsers(sub: argparse._SubParsersAction) -> None:
    data = sub.add_parser("data", help="data sets: the synthetic generator, annotation lists, checks")
    dsub = data.add_subparsers(dest="data_command", required=True, metavar="COMMAND")

    synth = dsub.add_parser("synth", help="generate the synthetic biased-actions data set "
                                          "(docs/synthetic_data.md)")
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
    check.add_argument("--classes", type=Path, default=None,
                       help="classes file (one name a line): labels must be < its line count "
                            "(default: classes.txt under --root if present)")
    check.add_argument("--num-classes", type=_positive_int, default=None,
                       help="labels must lie in [0, N) (instead of --classes)")
    check.add_argument("--unknown", action="store_true",
                       help="the list is an unknown set with its own class ids: no label range check")
    check.set_defaults(func=_cmd_data_check)

    overlap = dsub.add_parser("overlap", help="the unknown classes a pretraining set already has "
                                              "(docs/overlap.md)")
    overlap.add_argument("--pretrain", default="kinetics400", help="pretraining set (kinetics400)")
    overlap.add_argument("--unknown", required=True,
                         help="the unknown set's class list: a file (one name a line, or MiT's "
                              "name,index) or a shipped name (hmdb51)")
    overlap.add_argument("--mapping", type=Path, default=None,
                         help="pairs file 'unknown | pretraining class' (default: the shipped "
                              "dear_ray/data/protocols/kinetics400_overlap_map.txt); 'none' for "
                              "normalised names only")
    overlap.set_defaults(func=_cmd_data_overlap)


def _cmd_data_overlap(args: argparse.Namespace) -> int:
    from dear_ray.data import overlap as ov

    pretrain = ov.pretrain_classes(args.pretrain)
    name, path = ov.resolve_unknown(args.unknown)
    unknown = ov.read_names(path)
    mapping = None if str(args.mapping) == "none" else \
        (args.mapping or ov.DEFAULT_MAPPINGS.get(args.pretrain))
    pairs = ov.find_overlap(unknown, pretrain,
                            ov.read_mapping(mapping, unknown, pretrain) if mapping else None)
    print(ov.format_overlap(pairs, unknown, unknown_name=name, pretrain_name=args.pretrain,
                            mapping=mapping))
    return 0


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


def _cmd_data_lists(args: argparse.Namespace) -> int:
    from dear_ray.data.lists import build_lists

    written = build_lists(args.dataset, root=args.root, out_dir=args.out, split=args.split,
                          relative_to=args.relative_to)
    for key, path in written.items():
        print(f"{key}: {path}")
    root = args.relative_to or _list_root(written["train"], args.root)
    if root is not None:
        print(f"the lists' video paths are relative to {root}: use it as data.data_root, and "
              f"check the videos with `dear-ray data check {written['train']} --root {root}`")
    return 0


def _list_root(list_file: Path, near: Path, *, lines: int = 5) -> Path | None:
    """The folder the first video paths of `list_file` exist under: `near` or one of its
    subfolders (a data set's lists are written relative to its video folder), else None."""
    try:
        with open(list_file) as fh:
            paths = [line.split()[0] for _, line in zip(range(lines), fh) if line.strip()]
    except OSError:
        return None
    if not paths:
        return None
    candidates = [near, *sorted(p for p in near.iterdir() if p.is_dir())] if near.is_dir() else []
    return next((c for c in candidates if all((c / rel).is_file() for rel in paths)), None)


def _cmd_data_check(args: argparse.Namespace) -> int:
    from dear_ray.data.check import check_videos

    num_classes = args.num_classes
    classes = args.classes or (args.root / "classes.txt")
    if num_classes is None and not args.unknown and (args.classes or classes.is_file()):
        from dear_ray.data.annotations import read_class_names

        num_classes = len(read_class_names(classes))
    found = _list_root(args.list_file, args.root)
    if found is not None and found != args.root:
        raise CliError(f"the videos of {args.list_file} are not under --root {args.root} but under "
                       f"{found}: run `dear-ray data check {args.list_file} --root {found}` (and "
                       "use that folder as data.data_root)")
    report = check_videos(args.list_file, args.root, workers=args.workers, csv_path=args.csv,
                          num_classes=None if args.unknown else num_classes)
    print(report.format())
    return 1 if report.num_bad else 0
