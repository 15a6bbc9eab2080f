"""jobs/sweeps/foundation_ucf101.yaml end to end at toy scale: the sweep's own grid (every head,
frozen and fine-tuned) and its two backbone families, with each backbone swapped for its tiny
preset (swin3d_tiny, videomae_tiny) and the synthetic data in place of UCF-101 / HMDB-51 / MiT.

Starts (and stops) a local Ray instance: marked slow.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from dear_ray.tune import run_sweep
from dear_ray.tune.sweep import parse_sweep

pytestmark = pytest.mark.slow

SWEEP = Path(__file__).resolve().parents[2] / "jobs" / "sweeps" / "foundation_ucf101.yaml"
TINY = {"swin3d_t": "swin3d_tiny", "videomae_b": "videomae_tiny"}


def _toy(raw: dict, data_root: Path, run_dir: Path) -> dict:
    """The sweep with its backbones, data, budget and resources shrunk; grid and heads kept."""
    base = raw["base"]
    data = base["data"]
    for key in ("train_list", "val_list", "test_list", "test_shifted_list", "classes_file",
                "unknown", "mean", "std"):
        data.pop(key, None)
    data.update(data_root=str(data_root), dataset="synth", clip_len=8, frame_interval=2,
                scale_short=32, crop_size=32, batch_size=6, num_workers=0, test_views={})
    base["optim"].update(epochs=1, warmup_epochs=0)
    base["eval"].update(stochastic_passes=2, every_n_epochs=0)
    base["resources"] = {"num_workers": 0, "cpus_per_worker": 0.75, "use_gpu": False}
    base["checkpoint"] = {"every_n_epochs": 1, "num_to_keep": 1}
    base["tracking"] = {"experiment": raw["name"], "run_dir": str(run_dir)}
    cases = []
    for case in raw["cases"]:
        cases.append({"name": case["name"], "model.backbone": TINY[case["model.backbone"]]})
    raw.update(cases=cases, max_concurrent_trials=2, trial_resources={"CPU": 0.25},
               ray={"num_cpus": 2})
    return raw


def test_the_foundation_sweep_runs_every_head_frozen_and_fine_tuned(sweep_synth, tmp_path,
                                                                   monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    raw = yaml.safe_load(SWEEP.read_text())
    heads, freeze = raw["grid"]["model.head"], raw["grid"]["model.freeze_backbone"]
    spec = parse_sweep(_toy(raw, sweep_synth, tmp_path / "runs"))
    result = run_sweep(spec)
    assert result.failed == {}
    assert len(result.trials) == len(heads) * len(freeze) * len(TINY) == 16
    trained = result.table[result.table["method"].isin(heads)]
    assert set(trained["trial"]) == set(result.trials)
    assert trained["closed_top1"].between(0.0, 1.0).all()
    assert trained["auroc"].between(0.0, 1.0).all()
