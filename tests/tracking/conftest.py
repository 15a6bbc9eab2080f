"""Shared fixtures: MLflow's SQLite schema is created once per session and copied per test."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from mlflow import MlflowClient

from dear_ray.tracking.mlflow_runs import default_tracking_uri


@pytest.fixture(scope="session")
def new_tracking_store(tmp_path_factory) -> Callable[[Path], str]:
    """`new_tracking_store(root)` puts an empty MLflow database at `root/mlflow.db`; returns its URI.

    Creating the schema (alembic migrations) takes seconds; copying the file does not.
    """
    template = tmp_path_factory.mktemp("mlflow_template")
    MlflowClient(default_tracking_uri(template)).search_experiments()

    def make(root: Path) -> str:
        root.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(template / "mlflow.db", root / "mlflow.db")
        return default_tracking_uri(root)

    return make
