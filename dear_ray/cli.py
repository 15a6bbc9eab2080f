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


def _add_run_commands(sub: argparse._SubParsersAction) -> None:
    train = sub.add_parser("train", help="one training run on Ray Train (no Tune)")
    train.add_argument("config", type=Path, help="experiment config YAML")
    train.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="FIELD=VALUE",
        help="override a config field by dotted path, e.g. --set optim.lr=0.01 (YAML value)",
    )
    train.add_argument("--resume", action="store_true",
                       help="continue the newest unfinished run of this config's name instead of "
                            "starting a new one (NAME, NAME-2, NAME-3...)")
    train.set_defaults(func=_cmd_train)

    test = sub.add_parser("test", help="evaluate a checkpoint (ours, MMAction2, DEAR, SDN) on Ray "
                                       "Train workers, without training")
    test.add_argument("config", type=Path, help="experiment config YAML (model, data, evaluation)")
    test.add_argument("--checkpoint", type=Path, required=True,
                      help="the checkpoint: a .pth (MMAction2 / released DEAR / SDN layout) or a "
                           "dear_ray checkpoint_epoch_* folder; it must fit the configured model")
    test.add_argument("--set", dest="overrides", action="append", default=[],
                      metavar="FIELD=VALUE", help="override a config field by dotted path")
    test.add_argument("--resamples", type=int, default=None, metavar="N",
                      help="bootstrap resamples of the report's intervals (default 1000; 0: none)")
    test.set_defaults(func=_cmd_test)

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
    report.add_argument("--root", type=Path, default=None,
                        help="with a literature spec (jobs/literature/*.yaml): the folder of the "
                             "released score files (docs/importing.md)")
    report.add_argument("--run-dir", type=Path, default=Path("runs"),
                        help="with a literature spec: the runs folder (report, MLflow store)")
    report.add_argument("--no-mlflow", action="store_true", help="with a literature spec: do not log to MLflow")
    report.set_defaults(func=_cmd_report)

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
    from dear_ray.train.preflight import preflight

    overrides = _parse_overrides(args.overrides)
    _refuse_sweep_file(args.config)
    cfg = load_config(args.config, overrides=overrides)
    from dear_ray.tracking.mlflow_runs import resolve_tracking_uri

    preflight(cfg, tracking_uri=resolve_tracking_uri(cfg))
    name = _run_name(cfg, resume=args.resume)
    if args.resume:
        _refuse_changed_settings(cfg, name, args.config)
    with _RunConsole(cfg, name, "training", args.config) as console:
        result = run_training(cfg, trial_name=name)
        console.done()
    _report_single_run(cfg, name, result)
    return 0


class _RunConsole:
    """What `dear-ray train` / `test` show while a run goes: its private Ray (a worker group's
    output stays in Ray's log files), one line per epoch the run logs to MLflow
    (`EpochLines`), and, when it fails, one line naming the cause; Ctrl-C ends the run
    KILLED with how to continue it.

    Ctrl-C reaches a worker-group run's processes too, and Ray Train's own SIGINT handler
    aborts the run, which then fails with the workers' or the controller's error rather than a
    `KeyboardInterrupt`; a SIGINT is therefore noticed through a wakeup file descriptor
    (`signal.set_wakeup_fd`: every signal a Python handler receives writes its number there,
    whichever handler is installed)."""

    def __init__(self, cfg, name: str, kind: str, config_path: Path | None = None) -> None:
        self.cfg, self.name, self.kind, self.config_path = cfg, name, kind, config_path
        self.private = None
        self.lines = None
        self._signals: tuple[int, int] | None = None
        self._saved: tuple = ()

    def __enter__(self) -> _RunConsole:
        import signal

        from dear_ray.tracking.console import EpochLines
        from dear_ray.tracking.mlflow_runs import resolve_tracking_uri

        read, write = os.pipe()
        for fd in (read, write):
            os.set_blocking(fd, False)
        self._signals = (read, write)
        self._saved = (signal.getsignal(signal.SIGINT),
                       signal.set_wakeup_fd(write, warn_on_full_buffer=False))
        try:
            self.private = _start_private_ray(self.cfg.run_root() / "ray" / self.name, self.cfg) \
                if self.cfg.resources.num_workers > 0 else None  # 0: the loop runs here
        except BaseException:
            self._interrupted()
            raise
        if not self.cfg.eval_only:
            self.lines = EpochLines(resolve_tracking_uri(self.cfg), self.cfg.experiment_name(),
                                    self.name, self.cfg.optim.epochs).start()
        return self

    def done(self) -> None:
        if self.lines is not None:
            self.lines.stop()
            self.lines = None

    def _interrupted(self) -> bool:
        """A SIGINT arrived since `__enter__`; the signal handling is restored."""
        import signal

        read, write = self._signals
        try:
            received = os.read(read, 4096)
        except BlockingIOError:
            received = b""
        handler, wakeup = self._saved
        signal.set_wakeup_fd(wakeup)
        signal.signal(signal.SIGINT, handler)  # Ray Train leaves its own installed
        os.close(read)
        os.close(write)
        return signal.SIGINT in received

    def __exit__(self, exc_type, err, tb) -> bool:
        self.done()
        if self.private is not None:
            self.private.stop()
        interrupted = self._interrupted() or isinstance(err, KeyboardInterrupt)
        if err is None or isinstance(err, CliError) or os.environ.get("DEAR_RAY_DEBUG"):
            return False
        if interrupted:
            self._mark_killed()
            print(f"\ndear-ray: interrupted: {self.kind} run {self.name} stopped (MLflow run "
                  f"KILLED){self._how_to_continue()}", file=sys.stderr, flush=True)
            raise SystemExit(130) from None
        if isinstance(err, ValueError) and not _from_ray(err):
            return False  # a configuration error: main() prints it
        from dear_ray.train.bad_videos import describe_failure

        logs = self.private.log_dir if self.private is not None else None
        where = f"run folder: {self.cfg.run_root() / 'ray' / self.name}" + \
            (f"; workers' output: {logs}" if logs else "")
        raise CliError(f"{self.kind} run {self.name} failed: "
                       f"{describe_failure(err, self.cfg.run_root(), self.name)}\n  {where} "
                       "(DEAR_RAY_DEBUG=1 shows the traceback)") from err

    def _mark_killed(self) -> None:
        """The run's MLflow run ends KILLED (a worker group's abort ended it FAILED)."""
        from mlflow import MlflowClient

        from dear_ray.tracking.mlflow_runs import find_run, resolve_tracking_uri

        uri = resolve_tracking_uri(self.cfg)
        client = MlflowClient(uri)
        experiment = client.get_experiment_by_name(self.cfg.experiment_name())
        run_id = experiment and find_run(uri, experiment.experiment_id, run_name=self.name)
        if run_id:
            client.set_tag(run_id, "error", "interrupted (Ctrl-C)")
            client.set_terminated(run_id, "KILLED")

    def _how_to_continue(self) -> str:
        if self.kind != "training":
            return ""
        epochs = sorted(int(p.name.rsplit("_", 1)[1]) for p in
                        (self.cfg.run_root() / "ray" / self.name).glob("checkpoint_epoch_[0-9]*")
                        if p.is_dir() and p.name.rsplit("_", 1)[1].isdigit())
        where = f"after epoch {epochs[-1] + 1}, its last checkpoint" if epochs else \
            "from the start (it saved no checkpoint yet)"
        return (f"; `dear-ray train {self.config_path or 'CONFIG'} --resume` continues it "
                f"{where}")


def _from_ray(err: BaseException) -> bool:
    """The error came out of a Ray Train worker group (its own wrapper types)."""
    return type(err).__module__.startswith("ray.")


def _report_single_run(cfg, name: str, result: dict) -> None:
    """The open-set report of a `dear-ray train` run, as a sweep trial gets it."""
    from dear_ray.tracking.aggregate import report_run
    from dear_ray.tracking.mlflow_runs import resolve_tracking_uri

    out_dir = cfg.run_root() / "report" / name
    table = report_run(result["stores"], out_dir, tracking_uri=resolve_tracking_uri(cfg),
                       experiment=cfg.experiment_name(), run_id=result["run_id"], run_name=name,
                       **cfg.eval.report_options())
    _print_finished(cfg, "run", name, result, table, out_dir)


def _print_finished(cfg, kind: str, name: str, result: dict, table, out_dir: Path) -> None:
    """The end of `dear-ray train` / `test`: the run, its checkpoint, the videos it skipped,
    the results table and where the report is."""
    from dear_ray.train.bad_videos import skipped_videos_line

    print(f"{kind} {name} finished: MLflow run {result['run_id']}, checkpoint "
          f"{result['checkpoint']}, score stores {result['stores']}")
    skipped = skipped_videos_line(cfg.run_root(), name)
    if skipped:
        print(skipped)
    if table is not None and not table.empty:
        print(_results_text(table, None))
        print(f"tables and plots: {out_dir}")


def _cmd_test(args: argparse.Namespace) -> int:
    """`dear-ray test`: the config with `eval_only: true` and `model.pretrained` = --checkpoint;
    the checkpoint is checked against the model before Ray starts (`check_pretrained`). Its run
    is named `NAME-test` (`NAME-test-2`, ...), apart from the training runs `--resume` picks."""
    from dear_ray.config import load_config
    from dear_ray.tracking.mlflow_runs import resolve_tracking_uri
    from dear_ray.train.eval_run import check_pretrained, run_test
    from dear_ray.train.preflight import preflight

    _refuse_sweep_file(args.config)
    overrides = _parse_overrides(args.overrides)
    overrides.update({"model.pretrained": str(args.checkpoint), "eval_only": True})
    cfg = load_config(args.config, overrides=overrides)
    preflight(cfg, tracking_uri=resolve_tracking_uri(cfg))
    print(check_pretrained(cfg).summary(max_keys=3), flush=True)
    name = _run_name(cfg, resume=False, suffix="-test")
    (cfg.run_root() / "ray" / name).mkdir(parents=True, exist_ok=True)  # the name is taken
    extra = {} if args.resamples is None else {"resamples": args.resamples,
                                               "curve_resamples": min(args.resamples, 200)}
    with _RunConsole(cfg, name, "test"):
        result = run_test(cfg, trial_name=name, **extra)
    table = result.pop("table")
    _print_finished(cfg, "test run", name, result, table, cfg.run_root() / "report" / name)
    zoo = cfg.run_root() / "report" / name / "zoo.md"
    if zoo.is_file():
        print(zoo.read_text())
    return 0


def _start_private_ray(key_dir: Path, cfg):
    """A private local Ray for `dear-ray train` / `test` (unless RAY_ADDRESS names a cluster);
    the workers' output goes to its log files only."""
    from dear_ray.train.driver import set_ray_train_options

    set_ray_train_options()  # a cluster's Ray Train controller gets them from this process too
    if os.environ.get("RAY_ADDRESS"):
        return None
    from dear_ray.tune.local_ray import PrivateRay

    need = max(1, cfg.resources.num_workers) * cfg.resources.cpus_per_worker + 1
    private = PrivateRay(key_dir, num_cpus=max(os.cpu_count() or 1, int(need + 0.999)))
    private.start()
    print(f"Ray logs (workers' output): {private.log_dir}", flush=True)
    return private


def _refuse_sweep_file(path: Path) -> None:
    """A sweep YAML given to `train` gets a pointer to `sweep`, not five unknown-field errors."""
    import yaml

    try:
        raw = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError):
        return  # load_config reports it
    if isinstance(raw, dict) and "base" in raw and ({"grid", "cases", "search"} & set(raw)):
        raise CliError(f"{path} is a sweep file (it has 'base' and "
                       f"{'/'.join(sorted({'grid', 'cases', 'search'} & set(raw)))}): run it with "
                       f"`dear-ray sweep {path}`; `dear-ray train` takes one experiment config")


def _run_name(cfg, *, resume: bool, suffix: str = "") -> str:
    """NAME for the first run of a config name, then NAME-2, NAME-3...; `resume`: the newest one.
    `suffix` names another kind of run (`-test`: NAME-test, NAME-test-2, ... for `dear-ray
    test`), which the training runs' numbering and `--resume` leave alone.

    Each `dear-ray train` is a new Train run and MLflow run; a finished run is never reopened.
    """
    import re

    base = cfg.name + suffix
    storage = cfg.run_root() / "ray"
    pattern = re.compile(rf"^{re.escape(base)}(?:-(\d+))?$")
    taken = {}
    if storage.is_dir():
        for entry in storage.iterdir():
            match = pattern.match(entry.name)
            if match and entry.is_dir():
                taken[int(match.group(1) or 1)] = entry.name
    if resume:
        if not taken:
            raise CliError(f"--resume: no earlier run of {cfg.name!r} under {storage}")
        newest = taken[max(taken)]
        if _run_finished(cfg, newest):
            raise CliError(f"--resume: run {newest} already finished; run without --resume to "
                           "start a new one")
        print(f"resuming run {newest}", flush=True)
        return newest
    n = max(taken) + 1 if taken else 1
    name = base if n == 1 else f"{base}-{n}"
    if taken:
        print(f"new run {name} (earlier runs of {base!r}: {len(taken)}"
              + ("; --resume continues the newest)" if not suffix else ")"), flush=True)
    return name


def _refuse_changed_settings(cfg, name: str, config_path: Path) -> None:
    """`train --resume` with settings other than the run started with: the diff, before Ray
    starts (the run's resolved config is saved as `configs/<name>.yaml` when it opens)."""
    import yaml

    from dear_ray.config import ExperimentConfig
    from dear_ray.config.diff import config_diff, field_defaults, format_changes
    from dear_ray.tracking.mlflow_runs import resolve_tracking_uri

    saved = cfg.run_root() / "configs" / f"{name}.yaml"
    if not saved.is_file():
        return
    now = cfg.override({"tracking.uri": resolve_tracking_uri(cfg)}).to_dict()
    diff = config_diff(yaml.safe_load(saved.read_text()) or {}, now,
                       field_defaults(ExperimentConfig))
    if diff:
        raise CliError(f"--resume: the resolved config of run {name} changed since it started:\n"
                       f"{format_changes({name: diff})}\nrestore the old settings to continue "
                       f"it, or run `dear-ray train {config_path}` without --resume to start a "
                       "new run with the new ones")


def _run_finished(cfg, run_name: str) -> bool:
    from mlflow import MlflowClient

    from dear_ray.tracking.mlflow_runs import find_run, resolve_tracking_uri

    uri = resolve_tracking_uri(cfg)
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name(cfg.experiment_name())
    run_id = exp and find_run(uri, exp.experiment_id, run_name=run_name)
    return bool(run_id) and client.get_run(run_id).info.status == "FINISHED"


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
    from dear_ray.tracking.aggregate import report_sweep
    from dear_ray.tracking.mlflow_runs import resolve_tracking_uri
    from dear_ray.tune import load_sweep
    from dear_ray.tune.runner import experiment_name

    specs = [load_sweep(path) for path in args.sweep]
    if len(specs) == 1:
        spec = specs[0]
        from dear_ray.tracking.aggregate import report_dir

        from dear_ray.tune.runner import sweep_notes

        protocol = args.protocol or spec.base.eval.protocol
        notes = sweep_notes(spec)
        table = report_sweep(spec.sweep_dir, tracking_uri=resolve_tracking_uri(spec.base),
                             experiment=experiment_name(spec), protocol=protocol, notes=notes,
                             **spec.base.eval.report_options())
        print(_results_text(table, args.columns))
        for note in notes:
            print(f"dear-ray: warning: {note}", file=sys.stderr)
        print(f"tables and plots ({protocol} protocol): {report_dir(spec.sweep_dir, protocol)}")
        return 0
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
                            **specs[0].base.eval.report_options())
    print(_results_text(table, args.columns))
    print(f"tables and plots written to {out}")
    return 0


SUMMARY_COLUMNS = ["run", "method", "unknown_set", "closed_top1", "shifted_top1", "static_bias_gap",
                   "scuba_top1", "scufo_top1", "contrast_acc", "auroc", "open_maf1",
                   "binarized_auc", "fpr_at_95_tpr_first", "ece"]


def _results_text(table, columns: str | None) -> str:
    from dear_ray.tracking.console import format_results_table

    if table is None or table.empty:
        return format_results_table(table)
    if columns == "all":
        cols = None
    elif columns:
        cols = [c.strip() for c in columns.split(",") if c.strip()]
    else:
        cols = [c for c in SUMMARY_COLUMNS if c != "run" or table["run"].nunique() > 1]
        if "trial" in table.columns and "run" not in cols and table["trial"].nunique() > 1:
            cols.insert(0, "trial")
        keys = [c for c in ("run", "method", "unknown_set") if c in table.columns]
        if "score" in table.columns and table.duplicated(keys).any():
            cols.insert(cols.index("method") + 1, "score")  # one method under several scores
    return format_results_table(table, cols)


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
                            run_labels=labels, protocol=args.protocol)
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


def _add_scores_commands(sub: argparse._SubParsersAction) -> None:
    scores = sub.add_parser("scores", help="score stores: import another codebase's score files")
    ssub = scores.add_subparsers(dest="scores_command", required=True, metavar="COMMAND")
    imp = ssub.add_parser("import", help="DEAR / PSL .npz files or score tables -> score stores "
                                         "(docs/importing.md)")
    imp.add_argument("files", type=Path, nargs="+", help="the files, one model each")
    imp.add_argument("--format", choices=("dear", "table"), default="dear",
                     help="dear: DEAR / PSL .npz (ind_* / ood_* keys); table: CSV or parquet with "
                          "video_id, split, label, pred, score")
    imp.add_argument("--method", required=True, help="the method name of the results table (dear, psl, ...)")
    imp.add_argument("--unknown-set", required=True, help="the unknown data set (hmdb51, mit_v2, ...)")
    imp.add_argument("--known-set", default="ucf101", help="the known data set (default ucf101)")
    imp.add_argument("--out", type=Path, required=True, help="folder of the stores (<out>/<run>/*.parquet)")
    imp.add_argument("--threshold", type=float, default=None,
                     help="the method's released threshold, as its script takes it (softmax layout: "
                          "the max-softmax confidence below which a video is rejected)")
    imp.add_argument("--layout", choices=("auto", "unctt", "softmax", "openmax"), default="auto",
                     help="which arrays of a .npz to read (default: from its keys)")
    imp.add_argument("--run", default=None, help="run name of the stores (one file; default its stem)")
    imp.add_argument("--backbone", default=None, help="recorded with the stores (e.g. tsm_r50)")
    imp.set_defaults(func=_cmd_scores_import)


def _cmd_scores_import(args: argparse.Namespace) -> int:
    from dear_ray.scores.importing import import_scores, import_summary

    written = import_scores(args.files, fmt=args.format, method=args.method, unknown_set=args.unknown_set,
                            out_dir=args.out, threshold=args.threshold, known_set=args.known_set,
                            layout=args.layout, run=args.run, backbone=args.backbone)
    print(import_summary(written))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dear-ray",
        description="Open-set and debiased video action recognition (DEAR, SDN) on Ray.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_data_commands(sub)
    _add_run_commands(sub)
    _add_scores_commands(sub)
    return parser


def _warning_line(message, category, filename, lineno, line=None) -> str:
    """A Python warning as one console line (no source file and echoed source line)."""
    return f"dear-ray: warning: {message}\n"


def main(argv: Sequence[str] | None = None) -> int:
    import warnings

    parser = build_parser()
    args = parser.parse_args(argv)
    formatwarning, warnings.formatwarning = warnings.formatwarning, _warning_line
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
    finally:
        warnings.formatwarning = formatwarning


if __name__ == "__main__":
    sys.exit(main())
