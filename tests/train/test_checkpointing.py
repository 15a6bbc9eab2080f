"""Tests of dear_ray.train.checkpointing: a save/restore round trip gives identical state."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from torch import nn

from dear_ray.config import load_config
from dear_ray.train.checkpointing import STATE_FILE, load_checkpoint, save_checkpoint
from dear_ray.train.optim import build_optimizer, build_scheduler


class _Toy(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.backbone = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU())
        self.fc_cls = nn.Linear(8, 3)

    def forward(self, x):
        return self.fc_cls(self.backbone(x))

    def classifier_parameter_names(self) -> set[str]:
        return {"fc_cls.weight", "fc_cls.bias"}


def _setup(seed: int):
    torch.manual_seed(seed)
    model = _Toy()
    cfg = load_config({}, overrides={"optim.epochs": 4, "optim.schedule": "cosine",
                                     "optim.warmup_epochs": 1, "optim.classifier_lr_mult": 5})
    opt = build_optimizer(model, cfg.optim)
    sched = build_scheduler(opt, cfg.optim, iters_per_epoch=3)
    return model, opt, sched


def _train(model, opt, sched, steps: int) -> list[float]:
    losses = []
    for _ in range(steps):
        x = torch.randn(6, 4)
        y = torch.from_numpy(np.random.randint(0, 3, size=6))
        loss = nn.functional.cross_entropy(model(x), y) + 0 * random.random()
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        losses.append(loss.item())
    return losses


def test_resume_continues_exactly_as_an_uninterrupted_run(tmp_path):
    random.seed(0)
    np.random.seed(0)
    model, opt, sched = _setup(0)
    _train(model, opt, sched, 4)
    save_checkpoint(tmp_path / "ck", model=model, optimizer=opt, scheduler=sched, epoch=1,
                    global_step=4, extra={"mlflow_run_id": "abc"}, config_yaml="seed: 0\n")
    expected = _train(model, opt, sched, 5)
    expected_state = {k: v.clone() for k, v in model.state_dict().items()}

    other, opt2, sched2 = _setup(123)  # different weights and RNG until restored
    state = load_checkpoint(tmp_path / "ck", model=other, optimizer=opt2, scheduler=sched2)
    assert (state.epoch, state.global_step, state.extra) == (1, 4, {"mlflow_run_id": "abc"})
    assert sched2.last_epoch == 4
    # step 4 of 3 per epoch: t = 4/3, past the warm-up; cosine over 4 epochs gives
    # 0.5 (1 + cos(pi / 3)) = 0.75 of lr 0.01 (classifier x5)
    assert [g["lr"] for g in opt2.param_groups] == pytest.approx([0.0075, 0.0375])
    got = _train(other, opt2, sched2, 5)
    assert got == expected  # same weights, momentum buffers, lr schedule and random batches
    for key, value in other.state_dict().items():
        assert torch.equal(value, expected_state[key]), key
    assert (tmp_path / "ck" / "config.yaml").read_text() == "seed: 0\n"


def test_state_file_loads_weights_only_and_rng_can_be_left_alone(tmp_path):
    model, opt, sched = _setup(0)
    save_checkpoint(tmp_path, model=model, epoch=0, global_step=0)
    torch.load(tmp_path / STATE_FILE, weights_only=True)  # no pickled objects
    fresh = _Toy()
    torch.manual_seed(99)
    before = torch.get_rng_state()
    load_checkpoint(tmp_path, model=fresh, restore_rng=False)
    assert torch.equal(torch.get_rng_state(), before)


def test_missing_checkpoint_names_the_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match=str(tmp_path / "nope")):
        load_checkpoint(tmp_path / "nope", model=_Toy())
