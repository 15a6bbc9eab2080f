"""`dear-ray train` and `dear-ray test`: one run, its console, its name and its report."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from dear_ray.commands._common import CliError, _parse_overrides, _results_text


def add_parsers(sub: argparse._SubParsersAction) -> None:
    """`train` and `test`."""
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
    keys = {"grid", "cases", "search", "stages"} & set(raw) if isinstance(raw, dict) else set()
    if keys and "base" in raw:
        raise CliError(f"{path} is a sweep file (it has 'base' and {'/'.join(sorted(keys))}): "
                       f"run it with `dear-ray sweep {path}`; `dear-ray train` takes one "
                       "experiment config")


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
