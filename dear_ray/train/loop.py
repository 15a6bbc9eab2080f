"""The per-epoch training step and prediction over a split: plain functions with explicit arguments.

Nothing here knows about Ray or MLflow; distributed training only shows as `torch.distributed`
collectives when a process group is initialised (DDP): the all-bad-batch vote and the epoch
statistics' reduction.

Batches are the dicts of `dear_ray.data.collate_skip_bad`: `clip (B, C, T, H, W)` (test mode
`(B, V, C, T, H, W)`), `label (B,)`, `video_id` (B strings), optional `scene` (`(B, P)` soft or
`(B,)` hard scene labels) and `masked_clip`, and `bad` (the `BadSample`s dropped from the batch).
Clips are normalised float32, or uint8 (the loader's uint8 handover, `dear_ray.data.presets`)
with `clip_norm`, the `ClipNormalizer` that turns them into the same float32 numbers: they are
normalised here, after the move to the device (`_to_device`), so the DataLoader and the
host-to-device copy carry a quarter of the bytes.

SDN's two steps (`optim.sdn_mask_step: separate`, SDN libs/train_epoch.py `train_adv_msk_epoch`):
with a `masked_loader`, each iteration takes an SGD step on the unmasked batch (CE + scene loss),
then a SECOND SGD step on the next batch of the masked loader (an independent batch, from videos
with enough human boxes) with the mask-confusion loss alone. The epoch ends with the shorter
loader, as SDN's `zip` of the two.
"""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from dear_ray.train.optim import unwrap_model
from dear_ray.train.tally import EpochTally, world


class TrainingStep(nn.Module):
    """`forward` = the recognizer's `training_loss` (or `mask_confusion_loss`), so DDP's gradient
    hooks see the step.

    DistributedDataParallel synchronises gradients only for computations that go through its own
    `forward`; wrapping this module (not the recognizer) lets both SDN steps run under DDP.

    Args:
        model: a `Recognizer` (see `dear_ray.models.build_recognizer`).
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, clips: torch.Tensor, labels: torch.Tensor | None = None, *,
                anneal: float = 0.0, iteration: int = 0, scene: torch.Tensor | None = None,
                masked_clips: torch.Tensor | None = None, mode: str = "loss"):
        """`mode="loss"`: `training_loss(clips, labels, ...)`; `mode="mask"`: SDN's
        `mask_confusion_loss(clips)` on a masked batch (labels and the rest unused)."""
        if mode == "mask":
            return self.model.mask_confusion_loss(clips)
        if mode != "loss":
            raise ValueError(f"TrainingStep: mode must be 'loss' or 'mask', got {mode!r}")
        return self.model.training_loss(clips, labels, anneal=anneal, iteration=iteration,
                                        scene=scene, masked_clips=masked_clips)


def recognizer_of(step_or_model: nn.Module) -> nn.Module:
    """The recognizer inside a (DDP-wrapped) `TrainingStep`, or the module itself."""
    inner = unwrap_model(step_or_model)
    return inner.model if isinstance(inner, TrainingStep) else inner


def autocast(device: torch.device, enabled: bool):
    """bf16 autocast on CUDA when `enabled`; a no-op context on CPU (autocast stays off there)."""
    if enabled and device.type == "cuda":
        return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def to_channels_last_3d(model: nn.Module) -> nn.Module:
    """Every 5-D parameter and buffer (Conv3d weights) in channels_last_3d memory, in place.

    `model.to(memory_format=torch.channels_last_3d)` also converts 4-D tensors, and fails on them
    ("required rank 5 tensor"): TSM's Conv2d backbone, the CED head's Conv2d. 4-D weights stay as
    they are (their convolutions take a 4-D input, which the 5-D layout does not apply to).
    """
    with torch.no_grad():
        for tensor in (*model.parameters(), *model.buffers()):
            if tensor.dim() == 5:
                tensor.data = tensor.data.contiguous(memory_format=torch.channels_last_3d)
    return model


def _to_device(x: torch.Tensor | None, device: torch.device, channels_last: bool,
               clip_norm=None):
    """Move a batch tensor to `device`; uint8 clips are normalised there with `clip_norm` (the
    batch's `ClipNormalizer`); 5-d clips become channels_last_3d when asked, else contiguous."""
    if x is None:
        return None
    x = x.to(device, non_blocking=True)
    if x.dtype == torch.uint8:
        if clip_norm is None:
            raise ValueError(f"uint8 clips {tuple(x.shape)} came without batch['clip_norm'] (the "
                             "ClipNormalizer of the uint8 handover): cannot normalise them")
        x = clip_norm(x)
        if not (channels_last and x.dim() == 5):
            return x.contiguous()
    if channels_last and x.dim() == 5:
        x = x.contiguous(memory_format=torch.channels_last_3d)
    return x


def _world() -> tuple[bool, int]:
    return world()


@dataclass
class EpochResult:
    """What one training epoch did (summed over all ranks under DDP).

    Attributes:
        metrics: `loss` and every stats key (clip-weighted means), `train_top1` from the stats'
            `acc` (batch top-1), `lr` (first group, end of epoch), `epoch_time_s`, `clips_per_s`,
            `bad_videos`, `skipped_batches`.
        global_step: scheduler steps taken so far (one per batch, skipped batches included).
        bad: the bad samples this rank met (for a `BadVideoReport`).
    """

    metrics: dict[str, float]
    global_step: int
    bad: list


def _vote(n: int, distributed: bool) -> bool:
    """Whether every rank has a non-empty batch (all skip together, or DDP's all-reduce hangs)."""
    if not distributed:
        return n > 0
    flag = torch.tensor([1 if n > 0 else 0], dtype=torch.int32)
    dist.all_reduce(flag, op=dist.ReduceOp.MIN)
    return bool(flag.item())


def _check_labels(labels: torch.Tensor, num_classes: int | None) -> None:
    """Labels in [0, K), checked on the host before they move to the device (no device sync)."""
    if num_classes is None or labels.device.type != "cpu" or labels.numel() == 0:
        return
    lo, hi = int(labels.min()), int(labels.max())
    if lo < 0 or hi >= num_classes:
        raise ValueError(f"training_loss: labels must be in [0, {num_classes}), got values "
                         f"in [{lo}, {hi}]")


def _sgd_step(loss: torch.Tensor, optimizer, params, grad_clip) -> None:
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if grad_clip is not None:
        nn.utils.clip_grad_norm_(params, grad_clip)
    optimizer.step()


def train_one_epoch(step_module: nn.Module, loader, optimizer: torch.optim.Optimizer,
                    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None, *,
                    epoch: int, anneal: float, global_step: int, device: torch.device,
                    grad_clip: float | None = None, amp: bool = False,
                    channels_last: bool = False, bad_report=None,
                    masked_loader=None, check_every_n_steps: int = 1) -> EpochResult:
    """Train one epoch.

    Args:
        step_module: a `TrainingStep` (possibly DDP-wrapped) returning `(loss, stats)`.
        loader: batches as described in the module docstring.
        scheduler: stepped once per batch (also for skipped all-bad batches, so the schedule is a
            function of the batch position).
        epoch: 0-based, for messages.
        anneal: docs/methods.md#edl's lambda_t (`dear_ray.losses.annealing_coefficient`).
        global_step: scheduler steps before this epoch; `iteration` of `training_loss`.
        grad_clip: max global L2 norm of the gradients, or None.
        amp: bf16 autocast (CUDA only).
        channels_last: 5-D inputs (and the model, by the caller) in channels_last_3d.
        bad_report: a `BadVideoReport`; each batch's bad samples are added (it raises
            `TooManyBadVideosError` past its limit).
        masked_loader: SDN's separate masked batches (`clip` = masked clips): after each step on
            `loader`'s batch, a second optimizer step on the next masked batch with the
            mask-confusion loss alone (stats under `mask_step_*`, averaged over masked clips).
        check_every_n_steps: how often the host reads the losses back (`EpochTally`).

    Raises:
        FloatingPointError: the loss became NaN or infinite (naming epoch and step or steps).
    """
    distributed, _ = _world()
    step_module.train()
    params = [p for g in optimizer.param_groups for p in g["params"]]
    tally = EpochTally(check_every_n_steps, epoch)
    num_classes = getattr(recognizer_of(step_module), "num_classes", None)
    on_device = dict(device=device, channels_last=channels_last)
    start = time.perf_counter()
    pairs = zip(loader, masked_loader) if masked_loader is not None else ((b, None) for b in loader)
    for batch, masked in pairs:
        tally.add_bad(batch, bad_report)
        labels = batch.get("label")
        n = 0 if labels is None else int(len(labels))
        if _vote(n, distributed):
            _check_labels(labels, num_classes)
            with autocast(device, amp):
                loss, stats = _step_loss(step_module, batch, anneal=anneal, iteration=global_step,
                                         **on_device)
            tally.record("", loss, stats, n, step=global_step)
            _sgd_step(loss, optimizer, params, grad_clip)
        else:
            tally.skipped += 1
        if masked is not None:
            _mask_step(step_module, masked, tally, optimizer, params, grad_clip, amp=amp,
                       step=global_step, distributed=distributed, **on_device)
        if scheduler is not None:
            scheduler.step()
        tally.watch.check(global_step)
        global_step += 1
    tally.watch.check(global_step - 1, final=True)
    metrics = tally.metrics(optimizer, time.perf_counter() - start, distributed)
    return EpochResult(metrics=metrics, global_step=global_step, bad=tally.bad)


def _mask_step(step_module: nn.Module, masked: dict, tally: EpochTally, optimizer, params,
               grad_clip, *, amp: bool, step: int, distributed: bool, device,
               channels_last: bool) -> None:
    """SDN's second optimiser step, on the masked batch with the mask-confusion loss alone."""
    m = int(len(masked.get("label", ())))
    if not _vote(m, distributed):
        return
    with autocast(device, amp):
        loss, stats = step_module(_to_device(masked["clip"], device, channels_last,
                                             masked.get("clip_norm")), mode="mask")
    tally.record("_mask_step_", loss, stats, m, step=step)
    _sgd_step(loss, optimizer, params, grad_clip)


def _step_loss(step_module: nn.Module, batch: dict, *, anneal: float, iteration: int, device,
               channels_last: bool):
    """The training step's `(loss, stats)` on one batch moved to `device`."""
    norm = batch.get("clip_norm")
    return step_module(
        _to_device(batch["clip"], device, channels_last, norm),
        batch["label"].to(device, non_blocking=True), anneal=anneal, iteration=iteration,
        scene=_to_device(batch.get("scene"), device, False),
        masked_clips=_to_device(batch.get("masked_clip"), device, channels_last, norm))


def epoch_metrics(values: dict[str, float], *, epoch: int, anneal: float) -> dict[str, float]:
    """An epoch's metrics as reported and logged: loss terms get a `train_` prefix; lr, timing
    and bad-video counts keep their names."""
    plain = {"lr", "epoch_time_s", "clips_per_s", "bad_videos", "skipped_batches", "train_top1"}
    out = {"epoch": epoch, "anneal": anneal}
    for key, value in values.items():
        out[key if key in plain else f"train_{key}"] = float(value)
    return out


@dataclass
class Predictions:
    """Per-video outputs over a split, in loader order (bad videos left out).

    Attributes:
        logits: `(N, K)` view-averaged logits.
        features: `(N, F)` view-averaged pooled features.
        sample_logits: `(S, N, K)` per stochastic pass, or None.
        labels: `(N,)` int64; video_ids: N strings; bad: the skipped `BadSample`s.
    """

    video_ids: list[str]
    labels: np.ndarray
    logits: np.ndarray
    features: np.ndarray
    sample_logits: np.ndarray | None
    bad: list

    def top1(self) -> float:
        """Closed-set top-1 accuracy (labels must be known-class ids)."""
        if len(self.labels) == 0:
            return math.nan
        return float(np.mean(self.logits.argmax(axis=1) == self.labels))


@torch.no_grad()
def predict(model: nn.Module, loader, *, device: torch.device, stochastic_passes: int = 1,
            amp: bool = False, bad_report=None, average_clips: str = "score") -> Predictions:
    """Run `model.predict` over a test-mode loader (clips `(B, V, C, T, H, W)`).

    Args:
        model: the recognizer (unwrapped; `recognizer_of` gets it out of DDP).
        stochastic_passes: T > 1 keeps dropout / weight sampling on for T passes (softmax: MC
            dropout, bnn) and fills `sample_logits`.
        amp: bf16 autocast (CUDA only); the score stores pass it only with `eval.precision: amp`.
        average_clips: `score` or `prob` view averaging (`dear_ray.train.evaluation`).
    """
    model.eval()
    ids: list[str] = []
    labels: list[np.ndarray] = []
    logits: list[np.ndarray] = []
    feats: list[np.ndarray] = []
    samples: list[np.ndarray] = []
    bad: list = []
    for batch in loader:
        batch_bad = list(batch.get("bad") or [])
        bad.extend(batch_bad)
        if bad_report is not None and batch_bad:
            bad_report.update(batch_bad)
        if batch.get("label") is None or len(batch["label"]) == 0:
            continue
        clips = _to_device(batch["clip"], device, False, batch.get("clip_norm"))
        with autocast(device, amp):
            out = model.predict(clips, stochastic_passes=stochastic_passes,
                                average_clips=average_clips)
        logits.append(out.logits.float().cpu().numpy())
        feats.append(out.features.float().cpu().numpy())
        if out.sample_logits is not None:
            samples.append(out.sample_logits.float().cpu().numpy())
        labels.append(np.asarray(batch["label"].cpu(), dtype=np.int64))
        ids.extend(str(v) for v in batch["video_id"])
    if not logits:
        raise ValueError(f"no decodable video in the split ({len(bad)} bad): nothing to predict")
    return Predictions(
        video_ids=ids, labels=np.concatenate(labels), logits=np.concatenate(logits),
        features=np.concatenate(feats),
        sample_logits=np.concatenate(samples, axis=1) if samples else None, bad=bad)

