"""Tests of dear_ray.tracking.mlflow_runs: URIs, the server check, parent/child runs, resume."""

from __future__ import annotations

import http.server
import json
import socket
import threading
from pathlib import Path

import pytest
from mlflow import MlflowClient

from dear_ray.config import load_config
from dear_ray.tracking.mlflow_runs import (
    TrackingError,
    TrialLogger,
    artifact_location_for,
    check_tracking_uri,
    ensure_experiment,
    find_run,
    flatten_params,
    resolve_tracking_uri,
    run_tags,
    start_parent_run,
)


@pytest.fixture(scope="module")
def store(tmp_path_factory, new_tracking_store) -> tuple[str, str]:
    """One SQLite store for the module."""
    root = tmp_path_factory.mktemp("mlflow")
    uri = new_tracking_store(root)
    ensure_experiment(uri, "exp", artifact_location=artifact_location_for(uri, root))
    return uri, str(root)


def _config(tmp_path: Path, **tracking):
    return load_config({"tracking": {"run_dir": str(tmp_path / "runs"), **tracking}})


def test_default_uri_is_sqlite_under_run_dir(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    cfg = _config(tmp_path)
    expected = f"sqlite:///{(tmp_path / 'runs').resolve()}/mlflow.db"
    assert resolve_tracking_uri(cfg) == expected
    assert artifact_location_for(expected, tmp_path / "runs") == \
        (tmp_path / "runs" / "mlartifacts").resolve().as_uri()


def test_env_var_wins_over_default_and_config_wins_over_env(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://tracking.example:5000")
    assert resolve_tracking_uri(_config(tmp_path)) == "http://tracking.example:5000"
    cfg = _config(tmp_path, uri="sqlite:////tmp/elsewhere.db")
    assert resolve_tracking_uri(cfg) == "sqlite:////tmp/elsewhere.db"
    assert artifact_location_for("http://tracking.example:5000", tmp_path) is None


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_unreachable_server_error_names_the_uri():
    uri = f"http://127.0.0.1:{_closed_port()}"
    with pytest.raises(TrackingError, match="unreachable") as info:
        check_tracking_uri(uri, timeout=1.0)
    assert uri in str(info.value)


class _Handler(http.server.BaseHTTPRequestHandler):
    status_by_path: dict[str, int] = {}

    def do_GET(self):  # noqa: N802 (http.server API)
        path = self.path.split("?", 1)[0]
        self.send_response(self.status_by_path.get(path, 404))
        self.end_headers()
        self.wfile.write(b"OK")

    def log_message(self, *args):
        pass


@pytest.fixture
def http_server():
    server = http.server.HTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_server_check_health_and_rest_fallback_and_error_status(http_server):
    _, uri = http_server
    _Handler.status_by_path = {"/health": 200}
    check_tracking_uri(uri)
    _Handler.status_by_path = {"/api/2.0/mlflow/experiments/search": 200}  # no /health route
    check_tracking_uri(uri + "/")
    _Handler.status_by_path = {"/health": 503}
    with pytest.raises(TrackingError, match="HTTP 503") as info:
        check_tracking_uri(uri)
    assert uri in str(info.value)


def test_plain_directory_store_is_refused(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE", raising=False)
    with pytest.raises(TrackingError, match="MLFLOW_ALLOW_FILE_STORE"):
        check_tracking_uri(str(tmp_path / "mlruns"))


def test_sqlite_check_creates_the_database_folder(tmp_path):
    check_tracking_uri(f"sqlite:///{tmp_path}/a/b/mlflow.db")
    assert (tmp_path / "a" / "b").is_dir()


def test_flatten_params_dotted_json_and_truncated():
    flat = flatten_params({"optim": {"lr": 0.001, "milestones": [20, 40]}, "name": "x",
                           "empty": {}, "long": "a" * 7000, "none": None})
    assert flat["optim.lr"] == "0.001"
    assert json.loads(flat["optim.milestones"]) == [20, 40]
    assert flat["empty"] == "{}" and flat["none"] == "None" and flat["name"] == "x"
    assert len(flat["long"]) == 6000 and flat["long"].endswith("...[truncated]")


def test_run_tags_from_config_dict():
    cfg = load_config({}).to_dict()
    tags = run_tags(cfg, sweep="s", trial="t")
    assert tags["backbone"] == cfg["model"]["backbone"]
    assert tags["head"] == cfg["model"]["head"]
    assert set(tags) == {"backbone", "head", "dataset", "sweep", "trial"}
    assert tags["dataset"]


def test_parent_and_child_runs_found_with_search_runs(store):
    uri, _ = store
    exp = ensure_experiment(uri, "exp")
    parent = start_parent_run(uri, exp, sweep="sweep-a")
    loggers = [TrialLogger(uri, "exp", run_name=f"t{i}", parent_run_id=parent,
                           tags={"head": h}) for i, h in enumerate(["edl", "dear"])]
    for logger in loggers:
        logger.log_params({"model": {"head": "edl"}, "seed": 0})
        logger.log_metrics({"loss": 1.5}, step=0)
        logger.set_terminated()
    client = MlflowClient(uri)
    children = client.search_runs([exp], f"tags.mlflow.parentRunId = '{parent}'")
    assert sorted(r.info.run_name for r in children) == ["t0", "t1"]
    assert {r.data.tags["head"] for r in children} == {"edl", "dear"}
    assert all(r.info.status == "FINISHED" for r in children)
    assert children[0].data.params["model.head"] == "edl"
    # resuming the sweep finds the same parent run, a fresh sweep makes a new one
    assert start_parent_run(uri, exp, sweep="sweep-a", resume=True) == parent
    assert start_parent_run(uri, exp, sweep="sweep-a") != parent


def test_resumed_trial_continues_its_run_without_duplicates(store):
    uri, _ = store
    exp = ensure_experiment(uri, "exp")
    parent = start_parent_run(uri, exp, sweep="sweep-resume")
    first = TrialLogger(uri, "exp", run_name="trial0", parent_run_id=parent)
    assert not first.resumed
    first.log_params({"optim": {"lr": 0.01}})
    for step, loss in enumerate([3.0, 2.0]):
        first.log_metrics({"loss": loss}, step=step)
    first.set_terminated("FAILED")  # the trial died

    again = TrialLogger(uri, "exp", run_name="trial0", parent_run_id=parent)
    assert again.resumed and again.run_id == first.run_id
    again.log_params({"optim": {"lr": 0.01}})  # same value again: allowed
    again.log_metrics({"loss": 1.0}, step=2)
    again.set_terminated()

    by_id = TrialLogger(uri, "exp", run_name="trial0", run_id=first.run_id)
    assert by_id.run_id == first.run_id

    client = MlflowClient(uri)
    runs = client.search_runs([exp], f"tags.mlflow.parentRunId = '{parent}'")
    assert len(runs) == 1
    history = client.get_metric_history(first.run_id, "loss")
    assert [(m.step, m.value) for m in sorted(history, key=lambda m: m.step)] == \
        [(0, 3.0), (1, 2.0), (2, 1.0)]
    assert find_run(uri, exp, run_name="trial0", parent_run_id=parent) == first.run_id


def test_resume_of_unknown_run_id_names_it(store):
    uri, _ = store
    with pytest.raises(TrackingError, match="0123456789abcdef"):
        TrialLogger(uri, "exp", run_name="x", run_id="0123456789abcdef0123456789abcdef")


def test_artifacts_land_in_the_explicit_location(store, tmp_path):
    uri, root = store
    logger = TrialLogger(uri, "exp", run_name="art")
    (tmp_path / "cfg.yaml").write_text("a: 1\n")
    (tmp_path / "stores").mkdir()
    (tmp_path / "stores" / "test.parquet").write_bytes(b"x")
    logger.log_artifact(tmp_path / "cfg.yaml")
    logger.log_artifact(tmp_path / "stores", artifact_path="stores")
    art = Path(root) / "mlartifacts"
    assert len(list(art.rglob("cfg.yaml"))) == 1
    assert len(list(art.rglob("stores/test.parquet"))) == 1
    with pytest.raises(FileNotFoundError, match="missing.txt"):
        logger.log_artifact(tmp_path / "missing.txt")


def test_metrics_accept_numpy_and_skip_nan(store):
    import numpy as np

    uri, _ = store
    logger = TrialLogger(uri, "exp", run_name="np")
    logger.log_metrics({"a": np.float32(0.5), "b": np.int64(3), "c": float("nan")}, step=4)
    metrics = MlflowClient(uri).get_run(logger.run_id).data.metrics
    assert metrics == {"a": 0.5, "b": 3.0}


def test_unusable_sqlite_store_fails_at_once_naming_the_file(tmp_path):
    import time

    from dear_ray.tracking.mlflow_runs import TrackingError, check_tracking_uri

    (tmp_path / "mlflow.db").mkdir()  # a folder where the database file should be
    start = time.monotonic()
    with pytest.raises(TrackingError, match="mlflow.db is not a file"):
        check_tracking_uri(f"sqlite:///{tmp_path}/mlflow.db")
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(TrackingError, match="cannot create the database folder"):
        check_tracking_uri(f"sqlite:///{blocker}/sub/mlflow.db")
    (tmp_path / "junk.db").write_text("not a database")
    with pytest.raises(TrackingError, match="cannot be written|cannot create or open"):
        check_tracking_uri(f"sqlite:///{tmp_path}/junk.db")
    assert time.monotonic() - start < 60  # seconds, not SQLAlchemy's minutes of retries


@pytest.mark.slow
def test_two_processes_creating_one_new_store_both_succeed(tmp_path):
    """MLflow's table creation is not locked (PLATFORM.md: `table runs already exists`); the
    store is created under a file lock, so concurrent first users all get a working store."""
    import subprocess
    import sys

    uri = f"sqlite:///{tmp_path}/shared/mlflow.db"
    code = ("import sys\nfrom dear_ray.tracking.mlflow_runs import check_tracking_uri, "
            "ensure_experiment, start_parent_run\n"
            f"check_tracking_uri({uri!r})\n"
            f"exp = ensure_experiment({uri!r}, sys.argv[1])\n"
            f"start_parent_run({uri!r}, exp, sweep=sys.argv[1])\n")
    procs = [subprocess.Popen([sys.executable, "-c", code, name], stderr=subprocess.PIPE,
                              text=True) for name in ("a", "b", "c")]
    errors = [p.communicate(timeout=240)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], errors
    from mlflow import MlflowClient

    names = {e.name for e in MlflowClient(uri).search_experiments()}
    assert {"a", "b", "c"} <= names
