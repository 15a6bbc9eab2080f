"""A private local Ray instance for one sweep: its own temp dir and address, never outliving it.

`ray.init(address="local")` alone starts Ray under the shared `/tmp/ray`, and Ray's own helpers
(the Train placement-group cleaner's state-API calls) then look for "the" local cluster and log
`ConnectionError: Found multiple active Ray instances` when another user's Ray runs on the same
machine. A SIGKILLed driver also leaves Ray's DashboardAgent and RuntimeEnvAgent behind,
re-parented to PID 1 (seen with Ray 2.60). So a sweep's local Ray here:

- lives in its own temp dir, `/tmp/dear_ray-<uid>/<hash of the sweep folder>` (short: Ray's Unix
  socket paths must stay under ~107 bytes), with a `driver.pid` file naming the process that owns it;
- listens on a GCS port chosen here and exported as `RAY_ADDRESS` (and `RAY_GCS_SERVER_PORT`)
  before Ray starts, so every Ray process, and every library inside them that resolves "the"
  cluster, inherits the right address; `DEAR_RAY_INSTANCE=<temp dir>` marks them all;
- is watched by a small reaper process (`python -m dear_ray.tune._reaper`, its own session) that
  terminates every process of that temp dir once the driver is gone, whatever killed it;
- is looked for at the next start: leftovers of an earlier driver of the same sweep are reported and
  terminated (only processes whose command line names this temp dir); a LIVE earlier driver makes the
  new start fail with its PID.
"""

from __future__ import annotations

import hashlib
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil

log = logging.getLogger(__name__)
_ROOT = Path("/tmp") / f"dear_ray-{os.getuid()}"
PID_FILE = "driver.pid"
INSTANCE_VARIABLE = "DEAR_RAY_INSTANCE"


class RayInstanceBusyError(RuntimeError):
    """Another live process already runs a local Ray for the same sweep folder."""


def private_temp_dir(sweep_dir: str | os.PathLike) -> Path:
    """The temp dir of the local Ray of the sweep stored in `sweep_dir` (stable across runs)."""
    digest = hashlib.sha1(str(Path(sweep_dir).resolve()).encode()).hexdigest()[:12]
    return _ROOT / digest


def own_processes(temp_dir: Path) -> list[psutil.Process]:
    """The processes of the instance in `temp_dir`, but this one.

    Found by the `DEAR_RAY_INSTANCE=<temp_dir>` variable every process of the instance inherits
    (Ray's workers and agents rename themselves, `ray::DashboardAgent`, so their command lines no
    longer name the temp dir; their initial environment still does), or by a command line that
    names the temp dir.
    """
    needle = str(temp_dir)
    me = os.getpid()
    found = []
    for proc in psutil.process_iter(["pid", "cmdline"]):
        if proc.info["pid"] == me:
            continue
        try:
            cmd = proc.info["cmdline"] or []
            mine = any(needle in part for part in cmd) or \
                proc.environ().get(INSTANCE_VARIABLE) == needle
        except (psutil.Error, KeyError, OSError):
            continue
        if mine:
            found.append(proc)
    return found


def terminate(procs: list[psutil.Process], *, timeout: float = 5.0) -> int:
    """SIGTERM, then SIGKILL after `timeout` s; the number of processes that were alive."""
    alive = []
    for proc in procs:
        try:
            proc.send_signal(signal.SIGTERM)
            alive.append(proc)
        except psutil.Error:
            pass
    _, still = psutil.wait_procs(alive, timeout=timeout)
    for proc in still:
        try:
            proc.kill()
        except psutil.Error:
            pass
    psutil.wait_procs(still, timeout=timeout)
    return len(alive)


def terminate_instance(temp_dir: Path, *, settle: float = 3.0, timeout: float = 60.0) -> int:
    """Terminate every process of the instance in `temp_dir` until none has appeared for
    `settle` seconds (at most `timeout`): while it is torn down, a raylet may still start an
    agent (DashboardAgent, RuntimeEnvAgent) after the first sweep, which one pass would
    orphan. Returns the number of processes terminated."""
    count = 0
    deadline = time.monotonic() + timeout
    quiet_since = time.monotonic()
    while time.monotonic() < deadline:
        procs = own_processes(temp_dir)
        if procs:
            count += terminate(procs)
            quiet_since = time.monotonic()
        elif time.monotonic() - quiet_since >= settle:
            break
        time.sleep(0.3)
    return count


def _driver_pid(temp_dir: Path) -> int | None:
    try:
        return int((temp_dir / PID_FILE).read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def clean_leftovers(temp_dir: Path) -> int:
    """Terminate what an earlier, dead driver of this instance left; the number of processes.

    Raises:
        RayInstanceBusyError: the earlier driver is still alive (the same sweep runs elsewhere).
    """
    pid = _driver_pid(temp_dir)
    if pid is not None and pid != os.getpid() and psutil.pid_exists(pid):
        try:
            cmd = " ".join(psutil.Process(pid).cmdline())
        except psutil.Error:
            cmd = ""
        if "python" in cmd or "dear-ray" in cmd:
            raise RayInstanceBusyError(
                f"the local Ray in {temp_dir} belongs to a running process (pid {pid}: {cmd[:120]}); "
                "is the same sweep running in another terminal? Wait for it or stop it first")
    if own_processes(temp_dir):
        n = terminate_instance(temp_dir, settle=1.0)
        print(f"cleaned up {n} leftover Ray process(es) of an earlier run of this sweep "
              f"(driver pid {pid}) in {temp_dir}", flush=True)
        return n
    return 0


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PrivateRay:
    """Start (`start`) and stop (`stop`) the private local Ray of one sweep folder.

    Args:
        sweep_dir: the sweep's folder (keys the temp dir).
        num_cpus: CPUs the instance offers.
        log_to_driver: forward the Ray processes' stdout/stderr to this console (Ray's own INFO
            logs are off either way: `logging_config` level WARNING). A sweep keeps it off and
            prints its own lines from Tune callbacks; `dear-ray train` turns it on for the epoch
            lines its Train callback prints in the Train controller.
    """

    def __init__(self, sweep_dir: str | os.PathLike, *, num_cpus: int,
                 log_to_driver: bool = False) -> None:
        self.temp_dir = private_temp_dir(sweep_dir)
        self.num_cpus = num_cpus
        self.log_to_driver = log_to_driver
        self.address: str | None = None
        self._saved_env: dict[str, str | None] = {}
        self._reaper: subprocess.Popen | None = None

    @property
    def log_dir(self) -> Path:
        """Ray's log files of the current session (workers' stdout/stderr, controller logs)."""
        return self.temp_dir / "session_latest" / "logs"

    def start(self) -> str:
        """Clean leftovers, start Ray with its own temp dir and GCS port, connect; the address."""
        import ray

        self.temp_dir.mkdir(parents=True, exist_ok=True)
        clean_leftovers(self.temp_dir)
        (self.temp_dir / PID_FILE).write_text(f"{os.getpid()}\n")
        port = _free_port()
        self.address = f"127.0.0.1:{port}"
        env = {"RAY_ADDRESS": self.address, "RAY_GCS_SERVER_PORT": str(port),
               INSTANCE_VARIABLE: str(self.temp_dir),
               "RAY_AUTH_MODE": os.environ.get("RAY_AUTH_MODE", "disabled")}
        self._saved_env = {k: os.environ.get(k) for k in env}
        os.environ.update(env)
        self._reaper = subprocess.Popen(
            [sys.executable, "-m", "dear_ray.tune._reaper", "--pid", str(os.getpid()),
             "--temp-dir", str(self.temp_dir)],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True)
        ray.init(address="local", num_cpus=self.num_cpus, include_dashboard=True,
                 _temp_dir=str(self.temp_dir), _node_ip_address="127.0.0.1",
                 log_to_driver=self.log_to_driver, logging_config=ray.LoggingConfig(log_level="WARNING"))
        return self.address

    def stop(self) -> None:
        """Shut Ray down, terminate any process of this temp dir still alive, restore the env."""
        import ray

        try:
            ray.shutdown()
        finally:
            terminate_instance(self.temp_dir, settle=1.0)
            if self._reaper is not None:
                try:
                    self._reaper.terminate()
                    self._reaper.wait(timeout=5)
                except (OSError, subprocess.TimeoutExpired):
                    pass
            try:
                (self.temp_dir / PID_FILE).unlink()
            except OSError:
                pass
            for key, value in self._saved_env.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value


__all__ = ["PrivateRay", "RayInstanceBusyError", "clean_leftovers", "own_processes",
           "private_temp_dir", "terminate", "terminate_instance"]
