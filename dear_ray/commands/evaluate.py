"""`dear-ray evaluate`, `dear-ray config` and `dear-ray demo`."""

from __future__ import annotations

import argparse
from pathlib import Path

from dear_ray.commands._common import CliError, _name_list, _parse_overrides, _positive_int, _results_text
from dear_ray.commands.run import _refuse_sweep_file


def add_parsers(sub: argparse._SubParsersAction) -> None:
    """`evaluate`, `config` and `demo`."""
    evaluate = sub.add_parser("evaluate", help="metrics table and plots from score stores (parquet)")
    evaluate.add_argument("stores", type=Path, nargs="+", help="score store files or folders of them")
    evaluate.add_argument("--out", type=Path, required=True, help="output folder for tables and plots")
    evaluate.add_argument("--score", dest="scores", action="append", default=None,
                          type=_name_list, metavar="NAME,NAME",
                          help="uncertainty score(s) to evaluate, comma-separated or repeated "
                               "(default: each method's own)")
    evaluate.add_argument("--trials", type=_positive_int, default=10, help="subsets per openness point")
    evaluate.add_argument("--seed", type=int, default=0, help="seed of the unknown-class subsets")
    evaluate.add_argument("--merged-unknown", action="store_true",
                          help="also a row per model on all its unknown sets merged ('all')")
    evaluate.add_argument("--openmax-decision", choices=("argmax", "threshold"), default="argmax",
                          help="OpenMax's open-set decision: DEAR's argmax over K+1 (default) or "
                               "P(unknown) above the 95%% training threshold")
    evaluate.add_argument("--resamples", type=int, default=1000,
                          help="bootstrap resamples of the 95%% intervals (0: none)")
    evaluate.add_argument("--columns", default=None,
                          help="columns to print, comma-separated, or 'all' (default: a summary)")
    evaluate.add_argument("--protocol", choices=("dear", "psl"), default="dear",
                          help="open-set protocol of the table (see `dear-ray report --protocol`)")
    evaluate.add_argument("--posthoc-tune", choices=("none", "val"), default=None,
                          help="post-hoc detector hyper-parameters (see `dear-ray report --posthoc-tune`)")
    evaluate.set_defaults(func=_cmd_evaluate)

    config = sub.add_parser("config", help="print an experiment config: the defaults, or a file's "
                                           "resolved values")
    config.add_argument("config", type=Path, nargs="?", default=None,
                        help="a config YAML to resolve (default: print the defaults)")
    config.add_argument("--defaults", action="store_true", help="print every field's default")
    config.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="FIELD=VALUE", help="override a field by dotted path")
    config.set_defaults(func=_cmd_config)

    demo = sub.add_parser("demo", help="the main job: synthetic data, the demo sweep, the results table")
    demo.add_argument("--data", type=Path, default=Path("data/synth"), help="synthetic data folder")
    demo.add_argument("--sweep", type=Path, default=Path("jobs/sweeps/demo.yaml"))
    demo.set_defaults(func=_cmd_demo)


def _store_paths_and_labels(inputs: list[Path]) -> tuple[list[Path], list[str] | None]:
    """The store files under `inputs`; when a run name occurs under two inputs, every store is
    labelled `<source>/<run>` (source: the sweep folder above `stores/`, or the input as given when
    two inputs share that name)."""
    from dear_ray.scores import read_score_store

    per_input = []
    for path in inputs:
        if path.is_dir():
            found = sorted(path.rglob("*.parquet"))
        elif path.is_file():
            found = [path]
        else:
            raise CliError(f"{path}: no such score store file or folder")
        resolved = path.resolve()
        per_input.append((resolved.parent.name if resolved.name == "stores" else str(path), found))
    paths = [p for _, found in per_input for p in found]
    if not paths:
        raise CliError(f"no score stores (*.parquet) under {', '.join(map(str, inputs))}")
    if len(inputs) < 2:
        return paths, None
    names = [name for name, _ in per_input]
    if len(set(names)) < len(names):
        names = [str(path) for path in inputs]
    sources = [name for name, (_, found) in zip(names, per_input, strict=True) for _ in found]
    runs = [read_score_store(p).meta.run for p in paths]
    owners: dict[str, set[str]] = {}
    for run, source in zip(runs, sources, strict=True):
        owners.setdefault(run, set()).add(source)
    if all(len(s) == 1 for s in owners.values()):
        return paths, None
    return paths, [f"{source}/{run}" for run, source in zip(runs, sources, strict=True)]


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from dear_ray.metrics.evaluate import evaluate_stores

    paths, labels = _store_paths_and_labels(args.stores)
    scores = None if args.scores is None else [n for group in args.scores for n in group]
    table = evaluate_stores(paths, args.out, scores=scores, num_trials=args.trials, seed=args.seed,
                            merged_unknown=args.merged_unknown,
                            openmax_decision=args.openmax_decision, resamples=args.resamples,
                            run_labels=labels, protocol=args.protocol, posthoc_tune=args.posthoc_tune)
    print(_results_text(table, args.columns))
    print(f"tables and plots written to {args.out}")
    return 0


def _cmd_config(args: argparse.Namespace) -> int:
    import yaml

    from dear_ray.config import ExperimentConfig, load_config

    if args.config is not None and args.defaults:
        raise CliError("give a config file or --defaults, not both")
    if args.config is not None:
        _refuse_sweep_file(args.config)
        cfg = load_config(args.config, overrides=_parse_overrides(args.overrides))
    else:
        cfg = load_config(ExperimentConfig().to_dict(), overrides=_parse_overrides(args.overrides))
    print(yaml.safe_dump(cfg.to_dict(), sort_keys=False), end="")
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from dear_ray.demo import run_demo

    result = run_demo(data_dir=args.data, sweep_file=args.sweep)
    return 1 if result.failed else 0
