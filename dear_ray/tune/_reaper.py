"""Watch a sweep driver; once it is gone, terminate every process of its private Ray temp dir.

Started by `dear_ray.tune.local_ray.PrivateRay.start` in its own session, so a SIGKILL of the
driver (or of its process group) does not take the reaper with it:

    python -m dear_ray.tune._reaper --pid DRIVER_PID --temp-dir /tmp/dear_ray-0/abc123
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import psutil

from dear_ray.tune.local_ray import terminate_instance


def _alive(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--pid", type=int, required=True)
    parser.add_argument("--temp-dir", type=Path, required=True)
    parser.add_argument("--interval", type=float, default=1.0)
    parser.add_argument("--settle", type=float, default=5.0,
                        help="seconds without a process of the instance before it stops")
    args = parser.parse_args(argv)
    try:
        driver = psutil.Process(args.pid)
    except psutil.Error:
        driver = None
    while driver is not None and _alive(driver):
        time.sleep(args.interval)
    # the driver is gone: whatever still names its temp dir is an orphan of that run, and so is
    # an agent a dying raylet starts meanwhile
    terminate_instance(args.temp_dir, settle=args.settle)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
