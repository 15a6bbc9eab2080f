"""`dear-ray sweep`, `dear-ray export` and `dear-ray report`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from dear_ray.commands._common import CliError, _name_list, _parse_overrides, _results_text


def add_parsers(sub: argparse._SubParsersAction) -> None:
    """`sweep`, `export` and `report`."""
    sweep = sub.add_parser("sweep", help="run a sweep YAML with Ray Tune, then aggregate the results")
    sweep.add_argument("sweep", type=Path, help="sweep YAML, e.g. jobs/sweeps/demo.yaml")
    sweep.add_argument("--dry-run", action="store_true", help="validate and list the trials, run nothing")
    sweep.add_argument("--resume", action="store_true",
                       help="continue a sweep: finished trials are reused, new and unfinished ones run")
    sweep.add_argument("--restart-changed", action="store_true",
                       help="with --resume: train trials whose settings changed again from scratch "
                            "(without it such a resume is refused with the diff)")
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

    report = sub.add_parser("report", help="re-run the results aggregator of a finished sweep, or "
                                           "compare several sweeps in one table")
    report.add_argument("sweep", type=Path, nargs="+",
                        help="the sweep YAML(s) the sweep(s) ran from; with several, one table "
                             "over all their trials (labelled <sweep>/<trial>)")
    report.add_argument("--out", type=Path, default=None,
                        help="with several sweeps: the folder of the combined tables and plots "
                             "(default: <run_dir>/compare_<A>_vs_<B>)")
    report.add_argument("--columns", default=None,
                        help="columns to print, comma-separated, or 'all' (default: a summary)")
    report.add_argument("--protocol", choices=("dear", "psl"), default=None,
                        help="open-set protocol (default: the sweep's eval.protocol): `dear` or "
                             "`psl` (HMDB-51 without the UCF-101 overlap, MiT-v2 over 10 slices, "
                             "threshold-free); its tables go beside the other's")
    report.add_argument("--posthoc-tune", choices=("none", "val"), default=None,
                        help="post-hoc detector hyper-parameters: `val` = chosen on each trial's "
                             "val vs val_unknown stores by AUROC (never on test data), `none` = "
                             "the defaults (default: val where a trial has a val_unknown store; "
                             "docs/scores.md)")
    report.add_argument("--exclude-classes", default=None, metavar="NAMES|FILE",
                        help="also report each unknown set without these classes, as "
                             "<set>-minus-<tag>: comma-separated names, or a file (one name a "
                             "line, or saved `dear-ray data overlap` output) (default: the "
                             "sweep's eval.exclude_classes)")
    report.add_argument("--root", type=Path, default=None,
                        help="with a literature spec (jobs/literature/*.yaml): the folder of the "
                             "released score files (docs/importing.md)")
    report.add_argument("--run-dir", type=Path, default=Path("runs"),
                        help="with a literature spec: the runs folder (report, MLflow store)")
    report.add_argument("--no-mlflow", action="store_true", help="with a literature spec: do not log to MLflow")
    report.set_defaults(func=_cmd_report)


def _cmd_sweep(args: argparse.Namespace) -> int:
    from dear_ray.tune import expand_trials, format_trials, load_sweep, restrict_sweep

    spec = load_sweep(args.sweep)
    if args.overrides or args.trials:
        overrides = _parse_overrides(args.overrides)
        spec = restrict_sweep(spec, overrides=overrides, trials=args.trials)
        from dear_ray.tune.sweep import ineffective_overrides

        for line in ineffective_overrides(spec, overrides):
            print(f"dear-ray: warning: {line}", file=sys.stderr)
    if args.dry_run:
        print(format_trials(expand_trials(spec), spec))
        return 0
    if args.restart_changed and not args.resume:
        raise CliError("--restart-changed goes with --resume")
    from dear_ray.tune import run_sweep

    result = run_sweep(spec, resume=args.resume, restart_changed=args.restart_changed)
    from dear_ray.demo import print_results

    print_results(result)
    return 1 if result.failed else 0


def _cmd_export(args: argparse.Namespace) -> int:
    from dear_ray.models import export_weights

    out = export_weights(args.checkpoint, args.out)
    print(f"wrote {out} (model weights of {args.checkpoint}; load it with model.pretrained)")
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    from dear_ray.metrics.literature_spec import is_literature_spec

    if len(args.sweep) == 1 and is_literature_spec(args.sweep[0]):
        from dear_ray.literature import literature_command

        return literature_command(args)
    if args.root is not None:
        raise CliError("--root goes with a literature spec (jobs/literature/*.yaml), not a sweep")
    from dear_ray.tune import load_sweep

    specs = [load_sweep(path) for path in args.sweep]
    if len(specs) == 1:
        return _report_one(specs[0], args)
    # several sweeps: one table over all their stores, trials labelled <sweep>/<trial>
    paths, labels = [], []
    for spec in specs:
        found = sorted((spec.sweep_dir / "stores").glob("*/*.parquet"))
        if not found:
            raise CliError(f"{spec.source}: sweep {spec.name!r} has no score stores under "
                           f"{spec.sweep_dir / 'stores'}")
        paths += found
        labels += [f"{spec.name}/{p.parent.name}" for p in found]
    if len({s.name for s in specs}) < len(specs):
        raise CliError("report: two of the sweeps have the same name; compare them with "
                       "`dear-ray evaluate DIR_A/stores DIR_B/stores --out DIR`")
    out = args.out or specs[0].base.tracking.run_dir / Path("compare_" + "_vs_".join(s.name for s in specs))
    from dear_ray.metrics.evaluate import evaluate_stores

    table = evaluate_stores(paths, Path(out), run_labels=labels,
                            protocol=args.protocol or specs[0].base.eval.protocol,
                            posthoc_tune=args.posthoc_tune,
                            **_exclusions(args.exclude_classes, specs[0].base, default=True),
                            **specs[0].base.eval.report_options())
    print(_results_text(table, args.columns))
    print(f"tables and plots written to {out}")
    return 0


def _report_one(spec, args: argparse.Namespace) -> int:
    """`dear-ray report FILE` on one sweep: its report again (and its Pareto front)."""
    from dear_ray.tracking.aggregate import report_dir, report_sweep
    from dear_ray.tracking.mlflow_runs import resolve_tracking_uri
    from dear_ray.tune import expand_trials
    from dear_ray.tune.runner import experiment_name, sweep_notes
    from dear_ray.tune.stage_runner import report_trials

    protocol = args.protocol or spec.base.eval.protocol
    notes = sweep_notes(spec)
    table = report_sweep(spec.sweep_dir, tracking_uri=resolve_tracking_uri(spec.base),
                         experiment=experiment_name(spec), protocol=protocol, notes=notes,
                         posthoc_tune=args.posthoc_tune,
                         trials=report_trials(spec, expand_trials(spec)),
                         **_exclusions(args.exclude_classes, spec.base),
                         **spec.base.eval.report_options())
    print(_results_text(table, args.columns))
    if spec.optimize is not None:
        _report_pareto(spec)
    for note in notes:
        print(f"dear-ray: warning: {note}", file=sys.stderr)
    print(f"tables and plots ({protocol} protocol): {report_dir(spec.sweep_dir, protocol)}")
    return 0


def _report_pareto(spec) -> None:
    """The Pareto front of an optimize sweep's trials, again (`report_pareto`)."""
    from dear_ray.tracking.mlflow_runs import resolve_tracking_uri
    from dear_ray.tracking.pareto_report import PARETO_DIR, pareto_markdown, report_pareto
    from dear_ray.tune.runner import experiment_name

    front = report_pareto(spec.sweep_dir, spec.optimize.objectives,
                          tracking_uri=resolve_tracking_uri(spec.base),
                          experiment=experiment_name(spec))
    if not front.empty:
        print(pareto_markdown(front, spec.optimize.objectives))
        print(f"Pareto front: {spec.sweep_dir / 'report' / PARETO_DIR}")


def _exclusions(value: str | None, base, *, default: bool = False) -> dict:
    """`{"exclude_classes": Exclusion}` of `--exclude-classes` (names or a file) against the sweep
    config's unknown lists; without the flag, `{}` (the aggregator reads the sweep's
    `eval.exclude_classes`), or with `default` that of `base`."""
    from dear_ray.metrics.exclusion import exclusion_from_config

    if value is None and not default:
        return {}
    if value is None:
        given = base.eval.exclude_classes
    else:
        given = value if Path(value).expanduser().is_file() else [n.strip() for n in value.split(",")]
    try:
        return {"exclude_classes": exclusion_from_config(given, base.data.data_root, base.data.unknown)}
    except (OSError, ValueError) as err:
        raise CliError(str(err)) from err
