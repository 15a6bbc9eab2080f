"""The Pareto front of a multi-objective sweep (a sweep with `optimize:`, docs/sweeps.md).

Each trial's driver writes `<sweep>/objectives/<trial>.json` (`write_trial_objectives`: its
sampled `search:` values and its objectives, the values it reported to Tune). `report_pareto`
reads them all, marks the trials no other trial beats on every objective
(`dear_ray.metrics.pareto.pareto_front`), writes `<sweep>/report/pareto/` (`pareto.csv`,
`pareto.md`, `pareto.png`: every pair of objectives) and logs that folder to the sweep's parent
run in MLflow as `report/pareto/`, with the count of front trials as metric `pareto_trials`, and
tags each trial's run `pareto_front` true or false.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from dear_ray.metrics.pareto import pareto_front, plot_pareto_front

log = logging.getLogger(__name__)

OBJECTIVES_DIR = "objectives"
PARETO_DIR = "pareto"
PARAM_PREFIX = "param:"  # a sampled `search:` value's column in the Pareto table


def write_trial_objectives(sweep_dir: str | os.PathLike, trial: str, objectives: Mapping[str, float],
                           params: Mapping[str, Any]) -> Path:
    """`<sweep_dir>/objectives/<trial>.json`: `{"trial", "params", "objectives"}` (written to a
    temporary name, then renamed)."""
    path = Path(sweep_dir) / OBJECTIVES_DIR / f"{trial}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps({"trial": trial, "params": dict(params),
                               "objectives": {k: float(v) for k, v in objectives.items()}}, indent=1))
    tmp.replace(path)
    return path


def read_trial_objectives(sweep_dir: str | os.PathLike, objectives: Collection[str], *,
                          trials: Collection[str] | None = None) -> pd.DataFrame:
    """One row per trial that reported its objectives: `trial`, `param:<axis>` per sampled axis,
    then the objectives. A file that cannot be read is left out with a warning naming it."""
    rows = []
    for path in sorted((Path(sweep_dir) / OBJECTIVES_DIR).glob("*.json")):
        try:
            record = json.loads(path.read_text())
            row = {"trial": str(record["trial"]),
                   **{PARAM_PREFIX + k: v for k, v in record["params"].items()},
                   **{name: float(record["objectives"][name]) for name in objectives}}
        except (OSError, ValueError, KeyError, TypeError) as err:
            log.warning("Pareto front: %s left out: not a trial's objectives record (%s)", path, err)
            continue
        if trials is None or row["trial"] in trials:
            rows.append(row)
    return pd.DataFrame(rows)


def report_pareto(sweep_dir: str | os.PathLike, objectives: Mapping[str, str], *,
                  tracking_uri: str | None = None, experiment: str | None = None,
                  trials: Collection[str] | None = None) -> pd.DataFrame:
    """Mark the Pareto front of the sweep's trials, write `<sweep_dir>/report/pareto/` and, with
    `tracking_uri` and `experiment`, log it to the sweep's parent run (`_log_pareto`).

    Returns:
        `read_trial_objectives`' table with an `on_front` column, the front first; empty when no
        trial reported its objectives.
    """
    table = read_trial_objectives(sweep_dir, list(objectives), trials=trials)
    if table.empty:
        log.warning("Pareto front: no trial of %s reported its objectives", Path(sweep_dir).name)
        return table
    front = pareto_front(table, objectives)
    out_dir = Path(sweep_dir) / "report" / PARETO_DIR
    out_dir.mkdir(parents=True, exist_ok=True)
    front.to_csv(out_dir / "pareto.csv", index=False)
    (out_dir / "pareto.md").write_text(pareto_markdown(front, objectives))
    plot_pareto_front(front, objectives, out_dir / "pareto.png")
    if tracking_uri and experiment:
        _log_pareto(front, out_dir, tracking_uri, experiment, Path(sweep_dir).name)
    return front


def _log_pareto(front: pd.DataFrame, out_dir: Path, tracking_uri: str, experiment: str,
                sweep: str) -> None:
    """The folder as the parent run's `report/pareto/` artifacts, its metric `pareto_trials`, and
    a tag `pareto_front` (`true` / `false`) on every trial's run, to filter the runs list by."""
    from mlflow import MlflowClient

    from dear_ray.tracking.mlflow_runs import ensure_experiment, find_run

    experiment_id = ensure_experiment(tracking_uri, experiment)
    parent = find_run(tracking_uri, experiment_id, run_name=sweep, role="sweep")
    if parent is None:
        log.warning("Pareto front: no parent run of sweep %s in %s; not logged", sweep, tracking_uri)
        return
    client = MlflowClient(tracking_uri)
    client.log_artifacts(parent, str(out_dir), f"report/{PARETO_DIR}")
    client.log_metric(parent, "pareto_trials", float(front["on_front"].sum()))
    for trial, on in zip(front["trial"], front["on_front"], strict=True):
        run_id = find_run(tracking_uri, experiment_id, run_name=str(trial), parent_run_id=parent)
        if run_id is not None:
            client.set_tag(run_id, "pareto_front", "true" if on else "false")


def pareto_markdown(front: pd.DataFrame, objectives: Mapping[str, str]) -> str:
    """The front's trials as a markdown table (objectives with their direction, then the
    sampled values), and how many trials it was chosen from."""
    on = front[front["on_front"]]
    params = [c for c in front.columns if c.startswith(PARAM_PREFIX)]
    head = ["trial", *(f"{name} ({way})" for name, way in objectives.items()),
            *(c[len(PARAM_PREFIX):] for c in params)]
    lines = [f"Pareto front: {len(on)} of {len(front)} trial(s) that no other trial beats on every "
             "objective", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for _, row in on.iterrows():
        cells = [str(row["trial"]), *(f"{row[name]:.4f}" for name in objectives),
                 *(_cell(row[c]) for c in params)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _cell(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)
