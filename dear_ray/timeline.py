"""Wall-clock marks of a trial's start-up and shut-down, one JSON line per event.

Every process of a trial (the sweep driver, Tune's trial driver, each Ray Train worker) appends
`{"event", "t", "pid", "rank"}` lines to `<run_root>/timeline/<trial>.jsonl`; the sweep driver
writes `_sweep.jsonl`. `t` is `time.time()` (one clock for every process on a node). The
orchestration benchmark (`benchmarks/orchestration_overhead.py`) turns them into a breakdown of
the fixed cost per trial: where the seconds between "Tune starts the trial" and "the worker
trains" go, and between "the last report" and "Tune has the result".

A mark costs one small append; a folder that cannot be written never fails the run.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

FOLDER = "timeline"
SWEEP_FILE = "_sweep"


def mark(run_root: str | os.PathLike, trial: str, event: str, *, rank: int | None = None) -> None:
    """Append `event` (now) to `<run_root>/timeline/<trial>.jsonl`."""
    line = {"event": event, "t": time.time(), "pid": os.getpid()}
    if rank is not None:
        line["rank"] = rank
    try:
        path = Path(run_root) / FOLDER / f"{trial}.jsonl"
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a") as f:
            f.write(json.dumps(line) + "\n")
    except OSError:
        pass


def read(run_root: str | os.PathLike, trial: str) -> list[dict]:
    """The marks of one trial (or `SWEEP_FILE`), in time order; [] when there are none."""
    path = Path(run_root) / FOLDER / f"{trial}.jsonl"
    if not path.is_file():
        return []
    events = []
    for line in path.read_text().splitlines():
        try:
            events.append(json.loads(line))
        except ValueError:
            continue
    return sorted(events, key=lambda e: e["t"])


def first(events: list[dict], name: str, *, rank: int | None = None) -> float | None:
    """Time of the first mark `name` (of `rank` when given)."""
    for e in events:
        if e["event"] == name and (rank is None or e.get("rank") == rank):
            return e["t"]
    return None


def last(events: list[dict], name: str) -> float | None:
    """Time of the last mark `name`."""
    times = [e["t"] for e in events if e["event"] == name]
    return times[-1] if times else None


__all__ = ["FOLDER", "SWEEP_FILE", "first", "last", "mark", "read"]
