"""The static-bias splits through the evaluation: known-class stores that pair by video id, and the
report row that reads them (issue 12)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dear_ray.config import load_config
from dear_ray.metrics.evaluate import evaluate_stores
from dear_ray.models import build_recognizer
from dear_ray.scores.store import read_score_store
from dear_ray.train.data import num_known_classes
from dear_ray.train.evaluation import evaluate_splits, stores_dir


def test_scuba_and_scufo_stores_are_known_splits_that_pair(synth_root, tmp_path):
    torch.manual_seed(0)
    cfg = load_config({"name": "t", "data": {"data_root": str(synth_root), "crop_size": 32, "scale_short": 32,
                                             "clip_len": 8, "batch_size": 4},
                       "model": {"backbone": "i3d_tiny", "head": "edl"}, "optim": {"epochs": 1},
                       "eval": {"splits": ["train", "test", "test_scuba", "test_scufo", "unknown"]},
                       "tracking": {"run_dir": str(tmp_path / "runs")}})
    k = num_known_classes(cfg.data)
    model = build_recognizer(backbone="i3d_tiny", head="edl", num_classes=k)
    metrics = evaluate_splits(model, cfg, "trial0", k, torch.device("cpu"), False)
    out = stores_dir(cfg, "trial0")
    scuba, scufo = (read_score_store(out / f"{s}.parquet") for s in ("test_scuba", "test_scufo"))
    assert (scuba.meta.split, scufo.meta.split) == ("test_scuba", "test_scufo")
    assert scuba.meta.dataset == scufo.meta.dataset == "synth"
    assert list(scuba.video_ids) == list(scufo.video_ids) and np.array_equal(scuba.labels, scufo.labels)
    assert metrics["test_scuba_top1"] == pytest.approx(np.mean(scuba.preds == scuba.labels))
    assert "test_scufo_top1" in metrics and metrics["test_scufo_eval_time_s"] > 0
    table = evaluate_stores(sorted(out.glob("*.parquet")), tmp_path / "report", plots=False, resamples=20,
                            curve_resamples=5)
    row = table.iloc[0]
    hits = (scuba.preds == scuba.labels) & (scufo.preds != scufo.labels)
    assert row["scuba_top1"] == pytest.approx(np.mean(scuba.preds == scuba.labels))
    assert row["scufo_top1"] == pytest.approx(np.mean(scufo.preds == scufo.labels))
    assert row["contrast_acc"] == pytest.approx(hits.mean())
