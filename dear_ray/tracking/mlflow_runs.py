"""MLflow plumbing: tracking URIs, experiments, parent runs and `TrialLogger` (the store check:
`dear_ray.tracking.tracking_store`).

Everything goes through an explicit `mlflow.MlflowClient` bound to one tracking URI, never through
MLflow's global active-run state: trials run in separate Ray processes, and a run id plus a URI is
all a process needs to log into the right run.

Run layout of a sweep (one MLflow experiment per sweep):

    parent run   "<sweep>"          tags dear_ray.role=sweep, sweep=<sweep>
      child run  "<trial>"          tags dear_ray.role=trial, trial, sweep, backbone, head, dataset
        post-hoc "<trial>/<method>" tags dear_ray.role=posthoc, method (written by the aggregator)

A child run is found again by (parent run id, run name), so a trial that restarts (Tune
`--resume`, a Ray Train worker failure) continues its own run instead of starting a duplicate.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from mlflow import MlflowClient
from mlflow.entities import Metric, Param, RunTag, ViewType
from mlflow.exceptions import MlflowException
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID, MLFLOW_RUN_NAME
from mlflow.utils.time import get_current_time_millis
from mlflow.utils.validation import (
    MAX_METRICS_PER_BATCH,
    MAX_PARAM_VAL_LENGTH,
    MAX_PARAMS_TAGS_PER_BATCH,
    MAX_TAG_VAL_LENGTH,
)

from dear_ray.tracking.tracking_store import (  # noqa: F401  (re-exported)
    TrackingError,
    check_tracking_uri,
    prepare_sqlite_store,
)

ROLE_TAG = "dear_ray.role"
_TRUNCATION_MARK = "...[truncated]"
_DATABASE_SCHEMES = ("sqlite", "postgresql", "mysql", "mssql")


# --------------------------------------------------------------------------------------------
# URIs


def log_metric_batch(client: MlflowClient, run_id: str, metrics: Mapping[str, Any], *,
                     step: int | None = None) -> None:
    """Log numeric metrics (python or numpy scalars) at `step` (default 0) in batches of MLflow's
    maximum size: one request per batch instead of one per metric. NaNs are left out (MLflow
    stores them, but they break its charts and best-run searches)."""
    now = get_current_time_millis()
    items = []
    for key, value in metrics.items():
        number = float(np.asarray(value).item()) if not isinstance(value, bool) else float(value)
        if not math.isnan(number):
            items.append(Metric(key, number, now, int(step or 0)))
    for i in range(0, len(items), MAX_METRICS_PER_BATCH):
        client.log_batch(run_id, metrics=items[i: i + MAX_METRICS_PER_BATCH])


def default_tracking_uri(run_dir: str | os.PathLike) -> str:
    """`sqlite:///<abs run_dir>/mlflow.db`, the project's default tracking store."""
    return f"sqlite:///{Path(run_dir).expanduser().resolve() / 'mlflow.db'}"


def default_artifact_location(run_dir: str | os.PathLike) -> str:
    """`file://<abs run_dir>/mlartifacts`: explicit, so artifacts never land in a process's CWD."""
    return (Path(run_dir).expanduser().resolve() / "mlartifacts").as_uri()


def resolve_tracking_uri(cfg: Any) -> str:
    """The tracking URI of an `ExperimentConfig`.

    Precedence: `cfg.tracking.uri`, then the `MLFLOW_TRACKING_URI` environment variable, then
    `default_tracking_uri(cfg.tracking.run_dir)`.
    """
    if cfg.tracking.uri:
        return str(cfg.tracking.uri)
    env = os.environ.get("MLFLOW_TRACKING_URI", "").strip()
    if env:
        return env
    return default_tracking_uri(cfg.tracking.run_dir)


def artifact_location_for(tracking_uri: str, run_dir: str | os.PathLike) -> str | None:
    """Artifact root for a new experiment: `<run_dir>/mlartifacts` for database or file stores.

    A tracking server (http/https/databricks) manages its own artifact root, so None there.
    """
    scheme = tracking_uri.split(":", 1)[0].split("+", 1)[0].lower() if ":" in tracking_uri else ""
    if scheme in ("http", "https", "databricks"):
        return None
    return default_artifact_location(run_dir)


# --------------------------------------------------------------------------------------------
# Experiments, runs, params


def artifact_location_conflict(tracking_uri: str, experiment: str, run_dir: str | os.PathLike) -> str | None:
    """Why the run folder `run_dir` cannot use `experiment` of the store at `tracking_uri`: it
    exists with its artifacts in another folder (made by another run folder sharing the store,
    `MLFLOW_TRACKING_URI`), where this run's artifacts would land. None when it can."""
    wanted = artifact_location_for(tracking_uri, run_dir)
    if wanted is None:
        return None
    found = MlflowClient(tracking_uri).get_experiment_by_name(experiment)
    if found is None or found.artifact_location.rstrip("/") == wanted.rstrip("/"):
        return None
    return (f"MLflow experiment {experiment!r} of {tracking_uri} keeps its artifacts in "
            f"{found.artifact_location}, not in this run folder's {wanted}: this run's artifacts "
            "would land there; set tracking.experiment to another name, or tracking.run_dir to "
            "the folder that made it")


def ensure_experiment(tracking_uri: str, name: str, *, artifact_location: str | None = None) -> str:
    """The id of experiment `name`, created (or restored from deleted) if needed.

    Call this once in the driver before trials start: the first write creates the SQLite schema,
    and parallel first-time creation races.
    """
    client = MlflowClient(tracking_uri)
    experiment = client.get_experiment_by_name(name)
    if experiment is None:
        try:
            return client.create_experiment(name, artifact_location=artifact_location)
        except MlflowException:
            experiment = client.get_experiment_by_name(name)  # created concurrently
            if experiment is None:
                raise
    if experiment.lifecycle_stage == "deleted":
        client.restore_experiment(experiment.experiment_id)
    return experiment.experiment_id


def find_run(tracking_uri: str, experiment_id: str, *, run_name: str,
             parent_run_id: str | None = None, role: str | None = None) -> str | None:
    """The id of the newest active run named `run_name` (under `parent_run_id`), or None."""
    filters = [f"tags.`{MLFLOW_RUN_NAME}` = {_quote(run_name)}"]
    if parent_run_id:
        filters.append(f"tags.`{MLFLOW_PARENT_RUN_ID}` = {_quote(parent_run_id)}")
    if role:
        filters.append(f"tags.`{ROLE_TAG}` = {_quote(role)}")
    runs = MlflowClient(tracking_uri).search_runs(
        [experiment_id], " and ".join(filters), run_view_type=ViewType.ACTIVE_ONLY,
        max_results=1, order_by=["attributes.start_time DESC"])
    return runs[0].info.run_id if runs else None


def start_parent_run(tracking_uri: str, experiment_id: str, *, sweep: str,
                     tags: Mapping[str, str] | None = None, resume: bool = False) -> str:
    """Create the sweep's parent run, or with `resume` reuse the newest one of that sweep."""
    if resume:
        run_id = find_run(tracking_uri, experiment_id, run_name=sweep, role="sweep")
        if run_id is not None:
            MlflowClient(tracking_uri).update_run(run_id, status="RUNNING")
            return run_id
    all_tags = {ROLE_TAG: "sweep", "sweep": sweep, **(tags or {})}
    run = MlflowClient(tracking_uri).create_run(experiment_id, run_name=sweep, tags=all_tags)
    return run.info.run_id


def flatten_params(config: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """Flatten a nested config to dotted keys with string values MLflow accepts.

    Lists and tuples become JSON; values longer than MLflow's limit (6000 characters) are cut and
    end in `...[truncated]`, so logging never fails on a long value.
    """
    flat: dict[str, str] = {}
    for key, value in config.items():
        path = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            flat.update(flatten_params(value, prefix=f"{path}."))
            continue
        if isinstance(value, (list, tuple, Mapping)):
            text = json.dumps(value, default=str)
        else:
            text = str(value)
        flat[path] = _truncate(text, MAX_PARAM_VAL_LENGTH)
    return flat


def run_tags(config: Mapping[str, Any], *, sweep: str, trial: str) -> dict[str, str]:
    """The searchable tags of a trial's child run: backbone, head, dataset, sweep, trial."""
    model = config.get("model", {}) or {}
    data = config.get("data", {}) or {}
    dataset = data.get("dataset") or data.get("name") or Path(str(data.get("root", ""))).name
    return {
        "backbone": str(model.get("backbone", "")),
        "head": str(model.get("head", "")),
        "dataset": str(dataset),
        "sweep": sweep,
        "trial": trial,
    }


def _truncate(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - len(_TRUNCATION_MARK)] + _TRUNCATION_MARK


def _quote(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


# --------------------------------------------------------------------------------------------
# TrialLogger


class TrialLogger:
    """Starts or resumes one MLflow run of a trial and logs into it by run id.

    Only rank 0 of a trial creates one. Resuming: with `run_id`, that run continues; without it but
    with `parent_run_id`, an existing run named `run_name` under that parent continues (the sweep
    driver creates it before training starts), so a restarted trial never duplicates its run.

    Args:
        tracking_uri: MLflow tracking URI (see `resolve_tracking_uri`).
        experiment: experiment name; created if missing.
        run_name: the trial name.
        parent_run_id: the sweep's parent run, or None for a single run.
        run_id: a run to continue.
        tags: extra tags (`run_tags(...)`); `dear_ray.role=trial` is always set.
        artifact_location: artifact root if the experiment has to be created here.
    """

    def __init__(self, tracking_uri: str, experiment: str, *, run_name: str,
                 parent_run_id: str | None = None, run_id: str | None = None,
                 tags: Mapping[str, str] | None = None,
                 artifact_location: str | None = None) -> None:
        self.tracking_uri = tracking_uri
        self._client = MlflowClient(tracking_uri)
        self.experiment_id = ensure_experiment(tracking_uri, experiment,
                                               artifact_location=artifact_location)
        if run_id is None and parent_run_id is not None:
            run_id = find_run(tracking_uri, self.experiment_id, run_name=run_name,
                              parent_run_id=parent_run_id)
        self.resumed = run_id is not None
        all_tags = {ROLE_TAG: "trial", **{k: str(v) for k, v in (tags or {}).items()}}
        if parent_run_id is not None:
            all_tags[MLFLOW_PARENT_RUN_ID] = parent_run_id
        if run_id is None:
            run = self._client.create_run(self.experiment_id, run_name=run_name, tags=all_tags)
            self.run_id = run.info.run_id
        else:
            try:
                self._client.get_run(run_id)
            except MlflowException as err:
                raise TrackingError(f"cannot resume MLflow run {run_id} at {tracking_uri}: "
                                    f"{err.message}") from err
            self.run_id = run_id
            self._client.update_run(run_id, status="RUNNING")
            self.set_tags(all_tags)

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        items = [RunTag(k, _truncate(str(v), MAX_TAG_VAL_LENGTH)) for k, v in tags.items()]
        for i in range(0, len(items), MAX_PARAMS_TAGS_PER_BATCH):
            self._client.log_batch(self.run_id, tags=items[i: i + MAX_PARAMS_TAGS_PER_BATCH])

    def log_params(self, params: Mapping[str, Any]) -> None:
        """Log params; nested mappings are flattened to dotted keys (`flatten_params`).

        Logging a key again with the same value is allowed (a resumed trial does it); MLflow
        rejects a changed value.
        """
        existing = self._client.get_run(self.run_id).data.params
        items = [Param(k, v) for k, v in flatten_params(params).items() if existing.get(k) != v]
        for i in range(0, len(items), MAX_PARAMS_TAGS_PER_BATCH):
            self._client.log_batch(self.run_id, params=items[i: i + MAX_PARAMS_TAGS_PER_BATCH])

    def log_metrics(self, metrics: Mapping[str, Any], step: int | None = None) -> None:
        """Log numeric metrics (python or numpy scalars) at `step` (default 0)."""
        log_metric_batch(self._client, self.run_id, metrics, step=step)

    def log_artifact(self, path: str | os.PathLike, artifact_path: str | None = None) -> None:
        """Upload a file, or a folder's contents, into the run's artifacts."""
        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"artifact {path} does not exist")
        if path.is_dir():
            self._client.log_artifacts(self.run_id, str(path), artifact_path)
        else:
            self._client.log_artifact(self.run_id, str(path), artifact_path)

    def set_terminated(self, status: str = "FINISHED") -> None:
        """End the run: FINISHED, FAILED or KILLED."""
        self._client.set_terminated(self.run_id, status=status)

    def __enter__(self) -> TrialLogger:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.set_terminated("FAILED" if exc_type is not None else "FINISHED")
