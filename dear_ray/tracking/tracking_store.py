"""The tracking store is usable before training starts: an MLflow server answers, or a SQLite
store can be written and has MLflow's schema (created once, under a file lock)."""

from __future__ import annotations

import os
import urllib.error
import urllib.request
from pathlib import Path

from mlflow import MlflowClient


class TrackingError(RuntimeError):
    """MLflow cannot be used as configured; the message names the tracking URI."""


def check_tracking_uri(tracking_uri: str, *, timeout: float = 3.0) -> None:
    """Fail fast, before any training, when `tracking_uri` cannot be used.

    - http(s): GET `<uri>/health` (MLflow server), falling back to the REST API's experiment
      search when the server has no `/health` route; unreachable or an error status raises.
    - sqlite: the database's folder is created if missing; the file must take a write (a table
      created and rolled back, with a 2 s busy timeout, so a read-only file system, file or
      folder, or a locked store, fails in seconds, not after minutes of SQLAlchemy retries); a
      new store's schema is created here, under a file lock (`prepare_sqlite_store`).
    - a plain directory store is refused, as MLflow 3.17 itself does unless
      `MLFLOW_ALLOW_FILE_STORE=true`.

    Raises:
        TrackingError: naming the URI and the reason.
    """
    scheme = tracking_uri.split(":", 1)[0].lower() if ":" in tracking_uri else ""
    if scheme in ("http", "https"):
        _check_http_server(tracking_uri, timeout)
    elif scheme == "sqlite":
        db_path = tracking_uri[len("sqlite:///"):] if tracking_uri.startswith("sqlite:///") else ""
        if db_path and db_path != ":memory:":
            prepare_sqlite_store(tracking_uri, Path(db_path))
    elif scheme in ("", "file"):
        if os.environ.get("MLFLOW_ALLOW_FILE_STORE", "").lower() != "true":
            raise TrackingError(
                f"MLflow tracking URI {tracking_uri} is a plain directory store, which MLflow 3.17 "
                "refuses unless MLFLOW_ALLOW_FILE_STORE=true; use sqlite:///path/mlflow.db or a "
                "tracking server (http://host:port)")


def _has_mlflow_schema(db_path: Path) -> bool:
    """True when the SQLite file already holds MLflow's tables (its `alembic_version` is set)."""
    import sqlite3

    if not db_path.is_file() or db_path.stat().st_size == 0:
        return False
    try:
        conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=2.0)
        try:
            row = conn.execute("SELECT version_num FROM alembic_version").fetchone()
        finally:
            conn.close()
    except sqlite3.Error:
        return False
    return row is not None


def prepare_sqlite_store(tracking_uri: str, db_path: Path, *, attempts: int = 5) -> None:
    """Make sure the SQLite store at `db_path` can be written, creating its schema if new.

    MLflow's table creation is not locked: two processes creating the same new store at once make
    one of them die with `table runs already exists` (seen with MLflow 3). The first use is therefore
    done here under an exclusive `fcntl` lock on `<db>.lock`, retried a few times.

    Raises:
        TrackingError: the folder or the file cannot be written, or the schema cannot be made.
    """
    import fcntl
    import sqlite3
    import time

    try:
        db_path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise TrackingError(f"MLflow tracking URI {tracking_uri}: cannot create the database "
                            f"folder {db_path.parent}: {err.strerror or err}") from err
    if db_path.exists() and not db_path.is_file():
        raise TrackingError(f"MLflow tracking URI {tracking_uri}: {db_path} is not a file")
    try:
        conn = sqlite3.connect(str(db_path), timeout=2.0)
        try:
            conn.execute("BEGIN IMMEDIATE")  # the write lock: fails on a locked store
            # a real write: on a read-only file system the lock above is granted, this is not
            conn.execute("CREATE TABLE dear_ray_write_probe (x INTEGER)")
            conn.execute("ROLLBACK")
        finally:
            conn.close()
    except sqlite3.Error as err:
        raise TrackingError(f"MLflow tracking URI {tracking_uri}: the SQLite file {db_path} cannot "
                            f"be written ({err}); check its permissions and its folder's, or set "
                            "tracking.uri / MLFLOW_TRACKING_URI to a writable store") from err
    if _has_mlflow_schema(db_path):
        return  # created earlier: MLflow's own start-up (1-2 s of schema checks) is not needed here
    lock_path = db_path.with_name(db_path.name + ".lock")
    for attempt in range(attempts):
        try:
            with open(lock_path, "a") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX)
                try:
                    MlflowClient(tracking_uri).search_experiments(max_results=1)
                    return
                finally:
                    fcntl.flock(lock, fcntl.LOCK_UN)
        except OSError as err:
            raise TrackingError(f"MLflow tracking URI {tracking_uri}: cannot lock {lock_path}: "
                                f"{err.strerror or err}") from err
        except Exception as err:  # noqa: BLE001 - MLflow/SQLAlchemy raise many types here
            if attempt == attempts - 1:
                raise TrackingError(f"MLflow tracking URI {tracking_uri}: cannot create or open "
                                    f"the store: {err}") from err
            time.sleep(0.5 * (attempt + 1))


def _check_http_server(uri: str, timeout: float) -> None:
    base = uri.rstrip("/")
    probes = (f"{base}/health", f"{base}/api/2.0/mlflow/experiments/search?max_results=1")
    for i, url in enumerate(probes):
        try:
            with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 (user URI)
                if response.status < 400:
                    return
        except urllib.error.HTTPError as err:
            if err.code == 404 and i == 0:
                continue  # no /health route: try the REST API
            raise TrackingError(f"MLflow tracking server {uri} answered HTTP {err.code} "
                                f"({err.reason}) at {url}") from err
        except (urllib.error.URLError, OSError, ValueError) as err:
            reason = getattr(err, "reason", err)
            raise TrackingError(
                f"MLflow tracking server {uri} is unreachable ({reason}); start it, fix "
                "MLFLOW_TRACKING_URI / tracking.uri, or unset them to use the local sqlite store"
            ) from err
    raise TrackingError(f"MLflow tracking server {uri} answered neither /health nor the REST API")
