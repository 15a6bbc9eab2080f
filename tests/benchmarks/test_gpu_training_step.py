"""benchmarks/gpu_training_step.py: its --tiny CPU path end to end, and its device handling."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "gpu_training_step.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("gpu_training_step", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.modules.pop(spec.name, None)


def test_tiny_cpu_run_writes_every_table(bench, tmp_path, capsys):
    out = tmp_path / "res.json"
    assert bench.main(["--tiny", "--device", "cpu", "--steps", "1", "--out", str(out)]) == 0
    res = json.loads(out.read_text())
    assert [r["variant"] for r in res["step"]] == [v[0] for v in bench.VARIANTS]
    assert all(r["clips_per_s"] > 0 and r["steps"] == 1 for r in res["step"])
    assert res["settings"]["clip_shape"] == [3, 8, 32, 32] and res["settings"]["batch"] == 2
    assert res["settings"]["backbone"] == "i3d_tiny"
    assert "nesterov True" in res["settings"]["optimizer"]  # the sweep's I3D SGD
    (row,) = res["loader"]
    assert row["workers"] == 0 and row["clips"] == 2 * 6 and row["loader_over_step"] > 0
    assert res["end_to_end"]["clips_per_s"] > 0 and res["end_to_end"]["workers"] == 0
    printed = capsys.readouterr().out
    assert "vs fp32" in printed and "loader/step" in printed and "end to end" in printed


def test_cuda_without_a_gpu_exits_2(bench, monkeypatch, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert bench.main(["--device", "cuda"]) == 2
    assert "no CUDA device" in capsys.readouterr().err


def test_no_device_and_no_gpu_falls_back_to_tiny(bench, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    args = bench._parse([])
    assert (args.device, args.tiny, args.steps, args.workers) == ("cpu", True, 2, [0])
    full = bench._parse(["--device", "cpu", "--workers", "0,2"])
    assert (full.tiny, full.steps, full.warmup, full.workers, full.videos) == (
        False, 30, 10, [0, 2], 48)
