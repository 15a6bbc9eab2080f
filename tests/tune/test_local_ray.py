"""The private local Ray's process bookkeeping: found by its marker, cleaned, reaped (no Ray)."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import psutil
import pytest

from dear_ray.tune.local_ray import (
    INSTANCE_VARIABLE,
    PID_FILE,
    RayInstanceBusyError,
    clean_leftovers,
    own_processes,
    private_temp_dir,
)


def _sleeper(marker: str | None = None, *, retitle: bool = False) -> subprocess.Popen:
    """A child that sleeps; with `marker` it carries DEAR_RAY_INSTANCE like Ray's processes."""
    env = dict(os.environ)
    if marker is not None:
        env[INSTANCE_VARIABLE] = marker
    code = "import time\ntime.sleep(120)"
    return subprocess.Popen([sys.executable, "-c", code], env=env, start_new_session=True)


def _gone(proc: subprocess.Popen, timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return True
        time.sleep(0.2)
    return False


def test_temp_dir_is_stable_short_and_differs_per_sweep(tmp_path):
    a, b = private_temp_dir(tmp_path / "a"), private_temp_dir(tmp_path / "b")
    assert a == private_temp_dir(tmp_path / "a") and a != b
    # Ray's socket paths (<temp>/session_<date>_<pid>/sockets/plasma_store) must stay < 107 bytes
    assert len(str(a)) + len("/session_2026-12-01_21-04-05_427309_123456/sockets/plasma_store") < 107


def test_own_processes_are_found_by_their_marker_and_only_them(tmp_path):
    temp = tmp_path / "inst"
    mine, other, plain = _sleeper(str(temp)), _sleeper(str(tmp_path / "other")), _sleeper()
    try:
        pids = {p.pid for p in own_processes(temp)}
        assert mine.pid in pids and other.pid not in pids and plain.pid not in pids
    finally:
        for p in (mine, other, plain):
            p.kill()
            p.wait()


def test_leftovers_of_a_dead_driver_are_cleaned_and_reported(tmp_path, capsys):
    temp = tmp_path / "inst"
    temp.mkdir()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (temp / PID_FILE).write_text(f"{dead.pid}\n")
    orphan = _sleeper(str(temp))
    try:
        assert clean_leftovers(temp) == 1
        assert _gone(orphan)
        assert "cleaned up 1 leftover Ray process(es)" in capsys.readouterr().out
        assert clean_leftovers(temp) == 0
    finally:
        orphan.kill()


def test_a_live_driver_of_the_same_sweep_is_refused_with_its_pid(tmp_path):
    temp = tmp_path / "inst"
    temp.mkdir()
    driver = _sleeper()
    try:
        (temp / PID_FILE).write_text(f"{driver.pid}\n")
        with pytest.raises(RayInstanceBusyError, match=f"pid {driver.pid}"):
            clean_leftovers(temp)
    finally:
        driver.kill()
        driver.wait()


def test_reaper_terminates_the_instance_when_its_driver_is_killed(tmp_path):
    temp = tmp_path / "inst"
    driver = _sleeper()
    child = _sleeper(str(temp))
    reaper = subprocess.Popen([sys.executable, "-m", "dear_ray.tune._reaper", "--pid",
                               str(driver.pid), "--temp-dir", str(temp), "--interval", "0.2"])
    try:
        time.sleep(1.0)
        assert child.poll() is None and reaper.poll() is None  # the driver is alive: nothing happens
        driver.kill()
        driver.wait()
        assert _gone(child), "the reaper left the instance's process running"
        assert reaper.wait(timeout=20) == 0
    finally:
        for p in (driver, child, reaper):
            if p.poll() is None:
                p.kill()
    assert not psutil.pid_exists(child.pid) or psutil.Process(child.pid).status() == "zombie"


def test_reaper_also_ends_a_process_started_while_the_instance_is_torn_down(tmp_path):
    """A dying raylet can start an agent after the reaper's first sweep (the DashboardAgent and
    RuntimeEnvAgent left orphaned): here a process of the instance that, when terminated,
    starts another one."""
    temp = tmp_path / "inst"
    born = tmp_path / "respawned.pid"
    code = ("import os, signal, subprocess, sys, time\n"
            "def respawn(*_):\n"
            "    child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)'],\n"
            "                             start_new_session=True)\n"
            f"    open({str(born)!r}, 'w').write(str(child.pid))\n"
            "    os._exit(0)\n"
            "signal.signal(signal.SIGTERM, respawn)\n"
            "time.sleep(120)\n")
    env = {**os.environ, INSTANCE_VARIABLE: str(temp)}
    agent = subprocess.Popen([sys.executable, "-c", code], env=env, start_new_session=True)
    driver = _sleeper()
    reaper = subprocess.Popen([sys.executable, "-m", "dear_ray.tune._reaper", "--pid",
                               str(driver.pid), "--temp-dir", str(temp), "--interval", "0.2",
                               "--settle", "1.0"])
    try:
        time.sleep(1.0)
        driver.kill()
        driver.wait()
        assert reaper.wait(timeout=30) == 0
        assert _gone(agent)
        respawned = int(born.read_text())
        assert not psutil.pid_exists(respawned) or \
            psutil.Process(respawned).status() == psutil.STATUS_ZOMBIE, "the respawned agent lives"
        assert own_processes(temp) == []
    finally:
        for p in (driver, agent, reaper):
            if p.poll() is None:
                p.kill()
        if born.exists() and psutil.pid_exists(int(born.read_text())):
            psutil.Process(int(born.read_text())).kill()
