"""`dear_ray.timeline`: per-trial wall-clock marks, read back in time order."""

from __future__ import annotations

import json
import os

from dear_ray import timeline


def test_marks_are_read_back_in_time_order_with_first_and_last(tmp_path, monkeypatch):
    clock = iter([10.0, 12.5, 11.0, 20.0])
    monkeypatch.setattr(timeline.time, "time", lambda: next(clock))
    timeline.mark(tmp_path, "a", "start")
    timeline.mark(tmp_path, "a", "epoch", rank=0)
    timeline.mark(tmp_path, "a", "epoch", rank=1)
    timeline.mark(tmp_path, "a", "done")
    events = timeline.read(tmp_path, "a")
    assert [(e["event"], e["t"]) for e in events] == [
        ("start", 10.0), ("epoch", 11.0), ("epoch", 12.5), ("done", 20.0)]
    assert {e["pid"] for e in events} == {os.getpid()}
    assert timeline.first(events, "epoch") == 11.0 and timeline.last(events, "epoch") == 12.5
    assert timeline.first(events, "epoch", rank=0) == 12.5
    assert timeline.first(events, "missing") is None and timeline.last(events, "missing") is None
    # one JSON line a mark, in the trial's file
    lines = (tmp_path / "timeline" / "a.jsonl").read_text().splitlines()
    assert [json.loads(line)["event"] for line in lines] == ["start", "epoch", "epoch", "done"]


def test_an_unwritable_folder_or_a_broken_line_never_fails(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    timeline.mark(blocker, "a", "start")  # <file>/timeline cannot be created: ignored
    assert timeline.read(blocker, "a") == []
    (tmp_path / "timeline").mkdir()
    (tmp_path / "timeline" / "b.jsonl").write_text('{"event": "x", "t": 1.0, "pid": 1}\n{broken\n')
    assert [e["event"] for e in timeline.read(tmp_path, "b")] == ["x"]
    assert timeline.read(tmp_path, "nobody") == []
