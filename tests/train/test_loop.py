"""Tests of dear_ray.train.loop: training reduces the loss, bad batches, predictions."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

from dear_ray.config import load_config
from dear_ray.data.dataset import BadSample, BadVideoReport, TooManyBadVideosError
from dear_ray.train.loop import TrainingStep, predict, recognizer_of, train_one_epoch
from dear_ray.train.optim import build_optimizer, build_scheduler


class _ToyRecognizer(nn.Module):
    """The recognizer contract on a linear model of clip means: training_loss / predict."""

    def __init__(self, num_classes: int = 3, dropout: float = 0.0) -> None:
        super().__init__()
        self.backbone = nn.Conv3d(3, 4, 1)
        self.drop = nn.Dropout(dropout)
        self.fc_cls = nn.Linear(4, num_classes)
        self.calls: list[dict] = []

    def forward(self, clips):
        feats = self.backbone(clips).mean(dim=(2, 3, 4))
        return self.fc_cls(self.drop(feats)), feats

    def training_loss(self, clips, labels, *, anneal, iteration, scene=None, masked_clips=None):
        self.calls.append({"anneal": anneal, "iteration": iteration, "n": len(labels),
                           "scene": scene, "masked": masked_clips})
        logits, _ = self(clips)
        loss = nn.functional.cross_entropy(logits, labels)
        top1 = (logits.argmax(1) == labels).float().mean().item()
        return loss, {"loss_cls": loss.item(), "acc": top1, "loss": loss.item()}

    def mask_confusion_loss(self, masked_clips):
        self.calls.append({"mask_step": True, "n": len(masked_clips), "masked": masked_clips})
        logits, _ = self(masked_clips)
        p = logits.softmax(1)
        loss = (p * p.clamp_min(1e-12).log()).sum(1).mean()  # -H
        return loss, {"loss": loss.item(), "loss_mask": loss.item(), "mask_entropy": -loss.item()}

    def predict(self, clips, *, stochastic_passes=1, average_clips="score"):
        self.calls.append({"average_clips": average_clips})
        b, v = clips.shape[:2]
        logits, feats = self(clips.flatten(0, 1))
        logits = logits.view(b, v, -1).mean(1)
        feats = feats.view(b, v, -1).mean(1)
        samples = None
        if stochastic_passes > 1:
            self.drop.train()
            samples = torch.stack([self(clips.flatten(0, 1))[0].view(b, v, -1).mean(1)
                                   for _ in range(stochastic_passes)])
            self.drop.eval()
        return SimpleNamespace(logits=logits, features=feats, sample_logits=samples)

    def classifier_parameter_names(self):
        return {"fc_cls.weight", "fc_cls.bias"}


def _batches(n_batches: int, bs: int = 6, seed: int = 0, views: int | None = None):
    """Separable clips: class k has a bright channel k."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for b in range(n_batches):
        labels = torch.randint(0, 3, (bs,), generator=g)
        shape = (bs, 3, 2, 4, 4) if views is None else (bs, views, 3, 2, 4, 4)
        clips = torch.randn(shape, generator=g) * 0.3
        for i, y in enumerate(labels):
            clips[i].select(-4, int(y)).add_(1.0)  # channel axis: -4 of (..., C, T, H, W)
        out.append({"clip": clips, "label": labels, "index": torch.arange(bs) + b * bs,
                    "video_id": [f"v{b}_{i}" for i in range(bs)], "bad": []})
    return out


def _setup(lr=0.5, epochs=3, **kw):
    torch.manual_seed(0)
    model = _ToyRecognizer(**kw)
    cfg = load_config({}, overrides={"optim.lr": lr, "optim.epochs": epochs,
                                     "optim.grad_clip": 5.0})
    opt = build_optimizer(model, cfg.optim)
    return model, opt, cfg


def test_train_one_epoch_reduces_the_loss_and_reports_metrics():
    model, opt, cfg = _setup()
    data = _batches(8)
    sched = build_scheduler(opt, cfg.optim, len(data))
    step = TrainingStep(model)
    first = train_one_epoch(step, data, opt, sched, epoch=0, anneal=0.01, global_step=0,
                            device=torch.device("cpu"), grad_clip=5.0)
    second = train_one_epoch(step, data, opt, sched, epoch=1, anneal=0.2,
                             global_step=first.global_step, device=torch.device("cpu"))
    assert first.global_step == 8 and second.global_step == 16
    assert second.metrics["loss"] < 0.5 * first.metrics["loss"]
    assert second.metrics["train_top1"] > 0.9
    # the stats are clip-weighted means of what training_loss returned
    assert first.metrics["loss_cls"] == pytest.approx(first.metrics["loss"])
    assert first.metrics["bad_videos"] == 0 and first.metrics["skipped_batches"] == 0
    assert first.metrics["clips_per_s"] > 0 and first.metrics["epoch_time_s"] > 0
    assert first.metrics["lr"] == pytest.approx(opt.param_groups[0]["lr"])
    # anneal and the global iteration were passed by name
    assert [c["iteration"] for c in model.calls] == list(range(16))
    assert {c["anneal"] for c in model.calls[:8]} == {0.01}
    assert recognizer_of(step) is model


def test_bad_videos_are_reported_and_all_bad_batches_skipped():
    model, opt, cfg = _setup()
    data = _batches(3)
    bad = [BadSample(100, "b0", "/x/b0.mp4", "corrupt"), BadSample(101, "b1", "/x/b1.mp4", "eof")]
    data[0]["bad"] = bad[:1]
    data[1] = {"clip": None, "label": torch.empty(0, dtype=torch.int64),
               "index": torch.empty(0, dtype=torch.int64), "video_id": [], "bad": bad[1:]}
    sched = build_scheduler(opt, cfg.optim, len(data))
    report = BadVideoReport(100, max_bad_fraction=0.5)
    result = train_one_epoch(TrainingStep(model), data, opt, sched, epoch=0, anneal=0.1,
                             global_step=0, device=torch.device("cpu"), bad_report=report)
    assert result.metrics["bad_videos"] == 2 and result.metrics["skipped_batches"] == 1
    assert report.count == 2 and [b.video_id for b in result.bad] == ["b0", "b1"]
    assert len(model.calls) == 2            # the all-bad batch never reached the model
    assert result.global_step == 3          # but the schedule still advanced
    strict = BadVideoReport(10, max_bad_fraction=0.1)
    with pytest.raises(TooManyBadVideosError):
        train_one_epoch(TrainingStep(model), data, opt, None, epoch=0, anneal=0.1,
                        global_step=0, device=torch.device("cpu"), bad_report=strict)


def test_non_finite_loss_names_epoch_and_step():
    model, opt, _ = _setup()
    data = _batches(1)
    data[0]["clip"][0, 0, 0, 0, 0] = float("nan")
    with pytest.raises(FloatingPointError, match="epoch 4, step 7"):
        train_one_epoch(TrainingStep(model), data, opt, None, epoch=4, anneal=0.1,
                        global_step=7, device=torch.device("cpu"))


def test_channels_last_and_side_inputs_pass_through_on_cpu():
    model, opt, _ = _setup()
    model = model.to(memory_format=torch.channels_last_3d)
    data = _batches(1)
    data[0]["scene"] = torch.rand(6, 5)
    data[0]["masked_clip"] = data[0]["clip"].clone()
    train_one_epoch(TrainingStep(model), data, opt, None, epoch=0, anneal=0.1, global_step=0,
                    device=torch.device("cpu"), channels_last=True, amp=True)
    call = model.calls[0]
    assert call["scene"].shape == (6, 5)
    assert call["masked"].is_contiguous(memory_format=torch.channels_last_3d)


def test_predict_collects_views_ids_and_stochastic_passes():
    model, _, _ = _setup(dropout=0.5)
    data = _batches(2, bs=4, views=3)
    data[1]["bad"] = [BadSample(9, "bad", "/x/bad.mp4", "corrupt")]
    preds = predict(model, data, device=torch.device("cpu"), stochastic_passes=4)
    assert preds.logits.shape == (8, 3) and preds.features.shape == (8, 4)
    assert preds.sample_logits.shape == (4, 8, 3)
    assert preds.video_ids == [f"v{b}_{i}" for b in range(2) for i in range(4)]
    assert np.array_equal(preds.labels, torch.cat([d["label"] for d in data]).numpy())
    assert [b.video_id for b in preds.bad] == ["bad"]
    # dropout is off for the mean logits: two calls agree; the passes differ from each other
    again = predict(model, data, device=torch.device("cpu"))
    assert np.allclose(again.logits, preds.logits) and again.sample_logits is None
    assert not np.allclose(preds.sample_logits[0], preds.sample_logits[1])
    expected = np.mean(preds.logits.argmax(1) == preds.labels)
    assert preds.top1() == pytest.approx(expected)


def test_predict_on_an_all_bad_split_is_an_error():
    model, _, _ = _setup()
    batch = {"clip": None, "label": torch.empty(0, dtype=torch.int64), "video_id": [],
             "bad": [BadSample(0, "a", "/a.mp4", "x")]}
    with pytest.raises(ValueError, match="no decodable video"):
        predict(model, [batch], device=torch.device("cpu"))


class _CountingSGD(torch.optim.SGD):
    def __init__(self, params, lr):
        super().__init__(params, lr=lr)
        self.steps = 0

    def step(self, closure=None):
        self.steps += 1
        return super().step(closure)


def test_separate_mask_step_takes_a_second_step_on_the_masked_batch():
    # SDN libs/train_epoch.py train_adv_msk_epoch: per iteration, a step on the unmasked batch,
    # then a step on the next batch of the independent masked loader with the mask loss alone
    model, _, _ = _setup()
    opt = _CountingSGD(model.parameters(), lr=0.1)
    data = _batches(3, seed=0)
    masked = _batches(4, seed=1)  # longer: the epoch ends with the shorter loader (zip)
    result = train_one_epoch(TrainingStep(model), data, opt, None, epoch=0, anneal=0.1,
                             global_step=0, device=torch.device("cpu"), masked_loader=masked)
    assert opt.steps == 6 and result.global_step == 3
    kinds = ["mask" if c.get("mask_step") else "loss" for c in model.calls]
    assert kinds == ["loss", "mask"] * 3
    for i, call in enumerate(c for c in model.calls if c.get("mask_step")):
        assert torch.equal(call["masked"], masked[i]["clip"])
    assert all(c["masked"] is None for c in model.calls if not c.get("mask_step"))
    assert result.metrics["mask_step_mask_entropy"] > 0
    assert result.metrics["mask_step_loss"] == pytest.approx(-result.metrics["mask_step_mask_entropy"])
    # the second step moved the weights: a run without it ends elsewhere
    model2, _, _ = _setup()
    opt2 = _CountingSGD(model2.parameters(), lr=0.1)
    train_one_epoch(TrainingStep(model2), data, opt2, None, epoch=0, anneal=0.1, global_step=0,
                    device=torch.device("cpu"))
    assert opt2.steps == 3
    assert not torch.allclose(model.fc_cls.weight, model2.fc_cls.weight)


def test_mask_mode_runs_through_the_step_modules_forward():
    # DDP synchronises gradients only for what runs through its wrapped module's forward
    model, _, _ = _setup()
    step = TrainingStep(model)
    seen = []
    step.register_forward_hook(lambda mod, args, kwargs, out: seen.append(kwargs.get("mode")),
                               with_kwargs=True)
    clips = _batches(1)[0]["clip"]
    loss, stats = step(clips, mode="mask")
    assert seen == ["mask"] and "mask_entropy" in stats
    loss.backward()
    assert model.fc_cls.weight.grad is not None
    with pytest.raises(ValueError, match="mode must be 'loss' or 'mask', got 'both'"):
        step(clips, mode="both")


def test_predict_passes_the_view_averaging():
    model, _, _ = _setup()
    predict(model, _batches(1, bs=2, views=2), device=torch.device("cpu"), average_clips="prob")
    assert model.calls[-1] == {"average_clips": "prob"}


def _as_uint8(batches):
    """The float batches' clips as the uint8 handover delivers them: pixels in (..., T, H, W, C)
    memory shown as (..., C, T, H, W), with their normaliser; plus the float batches the
    normaliser gives back (the reference)."""
    from dear_ray.data.presets import ClipNormalizer

    norm = ClipNormalizer()
    raw, ref = [], []
    for b in batches:
        pixels = {}
        for key in ("clip", "masked_clip"):
            if key in b:
                u8 = (b[key] * 40 + 128).clamp(0, 255).to(torch.uint8)
                pixels[key] = u8.movedim(-4, -1).contiguous().movedim(-1, -4)
        raw.append({**b, **pixels, "clip_norm": norm})
        ref.append({**b, **{k: norm(v).contiguous() for k, v in pixels.items()}})
    return raw, ref


def test_uint8_batches_are_normalised_after_the_move_as_the_float_ones():
    raw, ref = _as_uint8(_batches(4))
    results = []
    for data in (ref, raw):
        model, opt, _ = _setup()
        out = train_one_epoch(TrainingStep(model), data, opt, None, epoch=0, anneal=0.1,
                              global_step=0, device=torch.device("cpu"))
        results.append((out.metrics["loss"], [p.detach().clone() for p in model.parameters()]))
    assert results[0][0] == results[1][0]
    assert all(torch.equal(a, b) for a, b in zip(results[0][1], results[1][1]))
    raw_views, ref_views = _as_uint8(_batches(2, bs=4, views=3))
    model, _, _ = _setup()
    p_raw = predict(model, raw_views, device=torch.device("cpu"))
    p_ref = predict(model, ref_views, device=torch.device("cpu"))
    assert np.array_equal(p_raw.logits, p_ref.logits)
    del raw[0]["clip_norm"]
    with pytest.raises(ValueError, match=r"uint8 clips \(6, 3, 2, 4, 4\) came without "
                                         r"batch\['clip_norm'\]"):
        train_one_epoch(TrainingStep(_setup()[0]), raw[:1], opt, None, epoch=0, anneal=0.1,
                        global_step=0, device=torch.device("cpu"))


def test_checking_the_loss_every_n_steps_gives_the_same_metrics_and_names_the_steps():
    results = {}
    for every in (1, 3, 50):
        model, opt, cfg = _setup()
        data = _batches(7)
        result = train_one_epoch(TrainingStep(model), data, opt, None, epoch=0, anneal=0.1,
                                 global_step=0, device=torch.device("cpu"),
                                 check_every_n_steps=every)
        results[every] = {k: v for k, v in result.metrics.items()
                          if k not in ("epoch_time_s", "clips_per_s")}
    assert results[1] == results[3] == results[50]  # bit for bit: float64 sums on the device
    model, opt, _ = _setup()
    data = _batches(5)
    data[3]["clip"][0, 0, 0, 0, 0] = float("nan")
    with pytest.raises(FloatingPointError, match=r"epoch 2, steps 12-13: a loss was NaN"):
        train_one_epoch(TrainingStep(model), data, opt, None, epoch=2, anneal=0.1,
                        global_step=10, device=torch.device("cpu"), check_every_n_steps=2)


def test_labels_out_of_range_are_refused_on_the_host_before_the_step():
    model, opt, _ = _setup()
    model.num_classes = 3
    data = _batches(2)
    data[1]["label"][0] = 3
    with pytest.raises(ValueError, match=r"labels must be in \[0, 3\), got values in \[\d, 3\]"):
        train_one_epoch(TrainingStep(model), data, opt, None, epoch=0, anneal=0.1,
                        global_step=0, device=torch.device("cpu"))
    assert len(model.calls) == 1  # the bad batch never reached the model
