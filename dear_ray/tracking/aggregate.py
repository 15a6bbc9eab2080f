"""The results aggregator: a sweep's score stores -> one results table, plots, and MLflow.

`report_sweep` runs at the end of every sweep and behind `dear-ray report SWEEP`. It evaluates every
trial's stores with `dear_ray.metrics.evaluate.evaluate_stores`, which draws the unknown-class
subsets ONCE and passes the same subsets to every method, and expands a `softmax` trial into
`softmax` (MSP), `mc_dropout` (BALD over the stored stochastic passes) and `openmax` (fitted post
hoc on the trial's train store) rows, a `softmax` or `sdn` trial into the post-hoc detector
rows `<method>+energy`, `+maxlogit`, `+gen`, `+temp_msp`, `+mahalanobis`, `+knn`, `+vim`,
`+react`, `+ash`, `+rmds`, `+scale`, `+fdbd`, `+nnguide`, `+she`, `+dice`, and an evidential
trial into `<method>+mpu`, `+diff_entropy`, `+mutual_info` (`dear_ray.metrics.posthoc`,
docs/scores.md; skipped with a warning where the stores lack what one needs, e.g. the
classifier file for ViM / ReAct / ASH / SCALE / DICE / fDBD).

Protocols (`protocol`, `dear_ray.metrics.protocols`): `dear` writes `<sweep>/report/` and logs
it under the parent run's `report/`; `psl` writes `<sweep>/report/psl/`, logs `report/psl/`,
and its metric names carry a `psl/` prefix, so both tables and both sets of metrics sit side by
side in the same runs.

Every unknown set is reported on its own (a row per trial, method and `unknown_set`); a merged set
only with `merged_unknown=True` (`unknown_set` = `all`).

MLflow: the table (markdown, CSV, parquet, and `log_table` JSON), the openness curves of all
methods and the per-method plots go to the sweep's parent run under `report/`; its description is
the short table of `dear_ray.tracking.mlflow_view` (one row per method, the headline columns),
and the experiment gets that module's saved view comparing the methods. Each method's metrics go
to its own run under the same names for every method: the trial's child run for the trial's own
method, and a run `<trial>/<method>` for each post-hoc method, a child of the sweep's parent run
beside the trials (so the runs list and its charts show every method at one level; tag `trial`
names its trial; its start and end times are its trial's). Every method run carries the tags
`method`, `method_kind` (trained, post-hoc, detector) and a colour of its own. A metric about an unknown set carries the set as a prefix, `<set>/<metric>` (`hmdb51/auroc`,
`mit_v2/open_maf1`; the demo: `unknown/auroc`), which MLflow's charts group by set; metrics of
the known splits only have no prefix (`closed_top1`, `ece`, `shifted_top1`, the static-bias
`scuba_top1`, `scufo_top1` and `contrast_acc`, `threshold`; a metric a trial lacks, e.g. without
SCUBA / SCUFO stores, is not logged). Each
metric M with an interval also logs `M_ci_low`, `M_ci_high` and `M_diff_sig` (1/0, only where a
softmax baseline exists) under the same prefix rule. Running the report again finds the same runs
and does not log unchanged values twice.

Seeds: `seed_summary` groups the trials whose resolved configs (`<sweep>/configs/<trial>.yaml`)
differ only in `seed` and gives, per method and unknown set, the mean over seeds with a Student-t
95% interval (`results_by_seed.*` in the report folder when a group has several seeds).
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Collection
from pathlib import Path

import pandas as pd
import yaml
from mlflow import MlflowClient
from mlflow.entities import Param, RunTag
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID

from dear_ray.metrics.bootstrap import DEFAULT_CURVE_RESAMPLES, DEFAULT_RESAMPLES
from dear_ray.metrics.evaluate import evaluate_stores, group_stores
from dear_ray.metrics.protocols import check_protocol
from dear_ray.metrics.seeds import seed_summary
from dear_ray.scores import read_score_store
from dear_ray.tracking.metric_names import metric_name, mlflow_metrics  # noqa: F401
from dear_ray.tracking.sweep_records import data_roots as _data_roots, sweep_exclusion  # noqa: F401
from dear_ray.tracking.mlflow_runs import (
    ROLE_TAG,
    TrialLogger,
    ensure_experiment,
    find_run,
    log_metric_batch,
    start_parent_run,
)
from dear_ray.tracking.mlflow_view import (
    COLOR_TAG,
    METHOD_KIND_TAG,
    NOTE_TAG,
    method_colors,
    method_kind,
    method_note,
    publish_view,
    run_url,
    runs_url,
    short_table,
)

log = logging.getLogger(__name__)
REPORT_ARTIFACTS = "report"
TABLE_JSON = "results_table.json"  # the `mlflow.log_table` copy of the results table


def find_trial_stores(sweep_dir: str | os.PathLike) -> dict[str, list[Path]]:
    """Trial name -> its score store files, from `<sweep_dir>/stores/<trial>/<split>.parquet`."""
    root = Path(sweep_dir) / "stores"
    if not root.is_dir():
        return {}
    trials = {}
    for trial_dir in sorted(p for p in root.iterdir() if p.is_dir()):
        paths = sorted(trial_dir.glob("*.parquet"))
        if paths:
            trials[trial_dir.name] = paths
    return trials


def complete_trials(trial_stores: dict[str, list[Path]]) -> tuple[dict[str, list[Path]],
                                                                 dict[str, str]]:
    """Split trials into those whose stores can be evaluated and the rest (trial -> reason).

    A trial that died while writing its stores, or whose stores are unreadable, is left out with
    its reason instead of failing the whole report.
    """
    usable, skipped = {}, {}
    for trial, paths in trial_stores.items():
        try:
            group_stores([read_score_store(p) for p in paths])
        except ValueError as err:  # ScoreStoreError is a ValueError
            skipped[trial] = str(err)
            continue
        usable[trial] = paths
    return usable, skipped


def report_dir(sweep_dir: str | os.PathLike, protocol: str = "dear") -> Path:
    """Where a protocol's report goes: `<sweep_dir>/report/` for `dear`, `report/<protocol>/`
    for another (so `dear-ray report SWEEP --protocol psl` adds a table beside DEAR's)."""
    check_protocol(protocol)
    root = Path(sweep_dir) / REPORT_ARTIFACTS
    return root if protocol == "dear" else root / protocol


def report_artifacts(protocol: str = "dear") -> str:
    """The parent run's artifact folder of a protocol's report: `report` or `report/<protocol>`."""
    return REPORT_ARTIFACTS if check_protocol(protocol) == "dear" else f"{REPORT_ARTIFACTS}/{protocol}"


def report_sweep(sweep_dir: str | os.PathLike, *, tracking_uri: str, experiment: str,
                 num_trials: int = 10, seed: int = 0, merged_unknown: bool = False,
                 resamples: int = DEFAULT_RESAMPLES, curve_resamples: int = DEFAULT_CURVE_RESAMPLES,
                 protocol: str = "dear", notes: tuple[str, ...] | list[str] = (),
                 trials: Collection[str] | None = None, **evaluate_options) -> pd.DataFrame:
    """Evaluate every trial of a sweep, write `<sweep_dir>/report/`, and log it all to MLflow.

    Args:
        sweep_dir: `<run_dir>/<sweep name>`, holding `stores/<trial>/<split>.parquet`.
        tracking_uri: the MLflow tracking URI of the sweep.
        experiment: the sweep's MLflow experiment name.
        num_trials: unknown-class subsets per openness point (docs/metrics.md: R = 10).
        seed: seed of those subsets; the same subsets serve every method.
        merged_unknown: also a row on all unknown sets merged (`unknown_set` = `all`).
        resamples, curve_resamples: bootstrap resamples of the intervals (`evaluate_stores`).
        protocol: `dear` (tables in `<sweep_dir>/report/`, artifacts `report/`, metrics
            `<set>/<metric>`) or `psl` (`report/psl/`, artifacts `report/psl/`, metrics
            `psl/<set>/<metric>` and `psl/<metric>`); both can sit side by side.
        notes: warning lines for the top of the parent run's description (e.g. trials trained
            under different settings, `dear_ray.tune.runner.mixed_settings`).
        evaluate_options: more `evaluate_stores` options (`posthoc`, `knn_k`, `mit_order`,
            `posthoc_tune`, ...); `exclude_classes` defaults to the trials' `eval.exclude_classes`
            (`sweep_exclusion`).

    Returns:
        One row per (trial, method, unknown set): `trial`, then the columns of `evaluate_stores`;
        empty when no trial left complete score stores.
    """
    sweep_dir = Path(sweep_dir).resolve()
    found = find_trial_stores(sweep_dir)
    usable, skipped = complete_trials({t: paths for t, paths in found.items()
                                       if trials is None or t in trials})
    for trial, reason in skipped.items():
        log.warning("report %s: trial %s left out: %s", sweep_dir.name, trial, reason)
    if not usable:
        log.warning("report %s: no trial has complete score stores under %s", sweep_dir.name,
                    sweep_dir / "stores")
        return pd.DataFrame()
    out_dir = report_dir(sweep_dir, protocol)
    if "exclude_classes" not in evaluate_options:
        evaluate_options["exclude_classes"] = sweep_exclusion(sweep_dir)
    run_to_trial = {read_score_store(paths[0]).meta.run: trial for trial, paths in usable.items()}
    table = evaluate_stores([p for paths in usable.values() for p in paths], out_dir,
                            num_trials=num_trials, seed=seed, merged_unknown=merged_unknown,
                            resamples=resamples, curve_resamples=curve_resamples, protocol=protocol,
                            data_of=_data_roots(sweep_dir), **evaluate_options)
    table.insert(0, "trial", table["run"].map(run_to_trial))
    _write_sweep_tables(table, out_dir, sweep_dir, trials=list(usable), skipped=skipped,
                        protocol=protocol)
    _log_report(table, out_dir, sweep_dir.name, tracking_uri, experiment, report_artifacts(protocol),
                notes=notes)
    return table


def _write_sweep_tables(table: pd.DataFrame, out_dir: Path, sweep_dir: Path, *, trials: list[str],
                        skipped: dict[str, str], protocol: str) -> None:
    """The results tables again with the trial column (the plots stay as `evaluate_stores` drew
    them), DEAR's model-zoo table, the per-seed summary and the list of skipped trials."""
    table.to_csv(out_dir / "results.csv", index=False)
    table.to_parquet(out_dir / "results.parquet", index=False)
    (out_dir / "results.md").write_text(_markdown_with_trial(out_dir / "results.md", table))
    if protocol == "dear":  # DEAR's model-zoo table, with the published numbers (its Tables 1-2)
        from dear_ray.tracking.zoo import write_zoo_report

        write_zoo_report(table, out_dir)
    by_seed = seed_summary(table, trial_settings(sweep_dir / "configs", trials))
    if not by_seed.empty and (by_seed["num_seeds"] > 1).any():
        by_seed.to_csv(out_dir / "results_by_seed.csv", index=False)
        by_seed.to_parquet(out_dir / "results_by_seed.parquet", index=False)
    if skipped:
        (out_dir / "skipped_trials.txt").write_text(
            "".join(f"{trial}: {reason}\n" for trial, reason in skipped.items()))


def trial_settings(configs_dir: Path, trials: list[str]) -> dict[str, str]:
    """trial -> its resolved config without `seed` (JSON), from `<configs_dir>/<trial>.yaml`:
    equal for trials that differ only in their seed. Trials without a config file are left out."""
    out = {}
    for trial in trials:
        path = Path(configs_dir) / f"{trial}.yaml"
        if not path.is_file():
            continue
        config = yaml.safe_load(path.read_text()) or {}
        config.pop("seed", None)
        out[trial] = json.dumps(config, sort_keys=True, default=str)
    return out


def _markdown_with_trial(md_path: Path, table: pd.DataFrame) -> str:
    """evaluate_stores' markdown table with a leading `trial` column."""
    lines = md_path.read_text().split("\n")
    trials = [str(t) for t in table["trial"]]
    out = ["| trial " + lines[0], "|---" + lines[1]]
    out += [f"| {t} " + line for t, line in zip(trials, lines[2: 2 + len(trials)], strict=True)]
    return "\n".join(out + lines[2 + len(trials):])


def _log_report(table: pd.DataFrame, out_dir: Path, sweep: str, tracking_uri: str,
                experiment: str, artifacts: str = REPORT_ARTIFACTS, notes=()) -> None:
    experiment_id = ensure_experiment(tracking_uri, experiment)
    client = MlflowClient(tracking_uri)
    parent = find_run(tracking_uri, experiment_id, run_name=sweep, role="sweep")
    if parent is None:  # e.g. a report on a sweep whose tracking store was replaced
        parent = start_parent_run(tracking_uri, experiment_id, sweep=sweep)
    table_file = f"{artifacts}/{TABLE_JSON}"
    if table_file not in {f.path for f in client.list_artifacts(parent, artifacts)}:
        # log_table tags the run for MLflow's table view; it APPENDS to an existing file, so a
        # second report overwrites the file below instead (same orient="split" JSON)
        client.log_table(parent, data=table, artifact_file=table_file)
    table.to_json(out_dir / TABLE_JSON, orient="split", index=False)
    client.log_artifacts(parent, str(out_dir), artifacts)

    def trial_run_of(trial: str, head: str) -> str:
        run_id = find_run(tracking_uri, experiment_id, run_name=trial, parent_run_id=parent)
        if run_id is None:  # stores without a run (e.g. copied in): give the trial one
            created = TrialLogger(tracking_uri, experiment, run_name=trial, parent_run_id=parent,
                                  tags={"sweep": sweep, "trial": trial, "head": head})
            created.set_terminated("FINISHED")
            run_id = created.run_id
        return run_id

    _log_method_rows(client, experiment_id, table, sweep, trial_run_of, posthoc_parent=parent)
    _describe_parent(client, experiment_id, parent, table, sweep, artifacts, notes)


def _describe_parent(client: MlflowClient, experiment_id: str, parent: str, table: pd.DataFrame,
                     sweep: str, artifacts: str, notes) -> None:
    """The short table as the parent run's description, and the saved view of the methods."""
    trials = table["trial"].nunique()
    shown = table[~table["method"].astype(str).str.contains("+", regex=False)]
    methods = shown.groupby(["trial", "method"]).ngroups
    links = [(f"full table ({len(table)} rows, every metric with its interval)",
              run_url(experiment_id, parent, base="", artifact=f"{artifacts}/results.md")),
             ("methods compared (runs and charts)", runs_url(experiment_id, base=""))]
    protocol = str(table["protocol"].iloc[0]) if "protocol" in table else "dear"
    text = short_table(table, title=f"{sweep}: {trials} trial(s), {methods} method(s)"
                       + ("" if protocol == "dear" else f", {protocol} protocol"),
                       links=links, notes=notes)
    client.set_tag(parent, NOTE_TAG, text)
    first_set = str(table["unknown_set"].iloc[0])
    keys = [(metric_name("auroc", first_set, protocol), f"AUROC ({first_set})"),
            (metric_name("closed_top1", first_set, protocol), "top-1 (test)")]
    if "shifted_top1" in table and table["shifted_top1"].notna().any():
        keys.append((metric_name("shifted_top1", first_set, protocol), "top-1 (test_shifted)"))
    if "open_maf1" in table and table["open_maf1"].notna().any():
        keys.append((metric_name("open_maf1", first_set, protocol), f"open maF1 ({first_set})"))
    publish_view(client, experiment_id, keys, num_runs=max(methods, 1))


def _log_method_rows(client: MlflowClient, experiment_id: str, table: pd.DataFrame, sweep: str,
                     trial_run_of, *, posthoc_parent: str | None = None) -> None:
    """Each (trial, method)'s metrics: the trial's own method into the trial's run, post-hoc
    methods (mc_dropout, openmax, ...) into runs `<trial>/<method>`, children of
    `posthoc_parent` (default: of the trial's run)."""
    first_method = table.groupby("trial", sort=False)["method"].first()
    groups = list(table.groupby(["trial", "method"], sort=False))
    kinds = [method_kind(method, first_method[trial]) for (trial, method), _ in groups]
    colors = method_colors([key for key, _ in groups], kinds)
    for ((trial, method), rows), kind in zip(groups, kinds, strict=True):
        head = rows["head"].iloc[0]
        metrics: dict[str, float] = {}
        for row in rows.to_dict("records"):
            metrics.update(mlflow_metrics(row))
        trial_run = trial_run_of(trial, head)
        if kind == "trained":
            run_id = trial_run
        else:
            run_id = _posthoc_run(client, experiment_id, trial_run, posthoc_parent or trial_run,
                                  name=f"{trial}/{method}",
                                  tags={ROLE_TAG: "posthoc", "sweep": sweep, "trial": trial,
                                        "head": head, **_inherited_tags(client, trial_run)})
        tags = {"method": method, "score": rows["score"].iloc[0],
                "unknown_sets": ",".join(dict.fromkeys(rows["unknown_set"])),
                METHOD_KIND_TAG: kind, COLOR_TAG: colors[(trial, method)],
                NOTE_TAG: method_note(rows)}
        client.log_batch(run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()])
        _log_detector_params(client, run_id, rows)
        _log_changed_metrics(client, run_id, metrics)


def _log_detector_params(client: MlflowClient, run_id: str, rows: pd.DataFrame) -> None:
    """A post-hoc detector's hyper-parameters (`detector_params`) as params `detector.<name>` and
    as the tag `detector_params`. MLflow params cannot change: where a report with other settings
    (`--posthoc-tune`) logged another value, the param keeps the first and the tag the latest."""
    cells = [c for c in rows.get("detector_params", pd.Series(dtype=object)).dropna() if c]
    if not cells:
        return
    params = {f"detector.{k}": str(v) for k, v in json.loads(cells[0]).items()}
    existing = client.get_run(run_id).data.params
    changed = sorted(k for k, v in params.items() if k in existing and existing[k] != v)
    if changed:
        log.warning("run %s: params %s were logged with other values by an earlier report; the tag "
                    "detector_params has the new ones", run_id, ", ".join(changed))
    new = [Param(k, v) for k, v in params.items() if k not in existing]
    client.log_batch(run_id, params=new, tags=[RunTag("detector_params", cells[0])])


def _posthoc_run(client: MlflowClient, experiment_id: str, trial_run: str, parent: str, *,
                 name: str, tags: dict[str, str]) -> str:
    """The run of a post-hoc method, found again by name under `parent` (or under its trial's
    run, where reports before this layout nested it: it moves under `parent`), else a new
    FINISHED one over its trial run's start and end."""
    for under in dict.fromkeys((parent, trial_run)):
        run_id = find_run(client.tracking_uri, experiment_id, run_name=name,
                          parent_run_id=under, role="posthoc")
        if run_id is not None:
            if under != parent:
                client.set_tag(run_id, MLFLOW_PARENT_RUN_ID, parent)
            return run_id
    info = client.get_run(trial_run).info
    run = client.create_run(experiment_id, start_time=info.start_time, run_name=name,
                            tags={**tags, MLFLOW_PARENT_RUN_ID: parent})
    client.set_terminated(run.info.run_id, "FINISHED", end_time=info.end_time or None)
    return run.info.run_id


def report_run(stores_dir: str | os.PathLike, out_dir: str | os.PathLike, *, tracking_uri: str,
               experiment: str, run_id: str, run_name: str, **evaluate_options) -> pd.DataFrame:
    """The report of one `dear-ray train` run: its stores evaluated like a sweep trial's, the
    tables and plots logged under the run's `report/` artifacts (`report/psl/` for
    `protocol="psl"`; give another `out_dir` per protocol), the metrics on the run (post-hoc
    methods in nested runs), under the same names as a sweep's child runs.

    Returns:
        The results table (with a `trial` column = `run_name`); empty when the run has no
        complete stores.
    """
    paths = sorted(Path(stores_dir).glob("*.parquet"))
    usable, skipped = complete_trials({run_name: paths} if paths else {})
    if not usable:
        log.warning("report of run %s: no complete score stores under %s (%s)", run_name,
                    stores_dir, skipped.get(run_name, "no stores"))
        return pd.DataFrame()
    out_dir = Path(out_dir)
    table = evaluate_stores(paths, out_dir, **evaluate_options)
    table.insert(0, "trial", run_name)
    table.to_csv(out_dir / "results.csv", index=False)
    table.to_parquet(out_dir / "results.parquet", index=False)
    client = MlflowClient(tracking_uri)
    client.log_artifacts(run_id, str(out_dir), report_artifacts(evaluate_options.get("protocol", "dear")))
    _log_method_rows(client, client.get_run(run_id).info.experiment_id, table, run_name,
                     lambda trial, head: run_id)
    return table


def _inherited_tags(client: MlflowClient, run_id: str) -> dict[str, str]:
    tags = client.get_run(run_id).data.tags
    return {k: tags[k] for k in ("backbone", "dataset") if k in tags}


def _log_changed_metrics(client: MlflowClient, run_id: str, metrics: dict[str, float]) -> None:
    current = client.get_run(run_id).data.metrics
    log_metric_batch(client, run_id,
                     {k: v for k, v in metrics.items() if current.get(k) != float(v)}, step=0)


