"""One epoch's bookkeeping for the training loop: the clip-weighted sums of the step stats, the
losses kept on their device and read back every `resources.check_every_n_steps` steps (with the
NaN/inf check), the counts and bad videos, and their reduction over the ranks."""

from __future__ import annotations

import math
from collections import defaultdict

import torch
import torch.distributed as dist


def world() -> tuple[bool, int]:
    """(whether a process group runs, its size)."""
    if dist.is_available() and dist.is_initialized():
        return True, dist.get_world_size()
    return False, 1


class LossWatch:
    """The epoch's loss sums and the NaN/inf check without a host synchronisation every step.

    Each step's loss is added on its device (float64, the arithmetic of Python floats) and its
    finiteness folded into a device flag; the host reads them every `check_every` steps and at
    the epoch's end. With `check_every=1` a bad loss is refused before its optimiser step (and
    the error names it), as a step-by-step check would.
    """

    def __init__(self, check_every: int, epoch: int) -> None:
        self.check_every, self.epoch = check_every, epoch
        self.sums: dict[str, torch.Tensor] = {}
        self.bad: torch.Tensor | None = None
        self.first = self.last = None

    def add(self, key: str, loss: torch.Tensor, n: int, *, step: int, stats: dict) -> None:
        value = loss.detach()
        if self.check_every == 1:
            if not torch.isfinite(value):
                raise FloatingPointError(f"epoch {self.epoch}, step {step}: loss is "
                                         f"{value.item()} (stats {stats})")
        else:
            finite = torch.isfinite(value)
            self.bad = ~finite if self.bad is None else self.bad | ~finite
            self.first = step if self.first is None else self.first
            self.last = step
        total = value.to(torch.float64) * n
        self.sums[key] = total if key not in self.sums else self.sums[key] + total

    def check(self, step: int, *, final: bool = False) -> None:
        """Raise if a loss since the last check was NaN or infinite (every `check_every` steps)."""
        if self.bad is None or not (final or (step + 1) % self.check_every == 0):
            return
        bad, self.bad = bool(self.bad), None
        first, self.first = self.first, None
        if bad:
            raise FloatingPointError(f"epoch {self.epoch}, steps {first}-{self.last}: a loss was "
                                     "NaN or infinite (set resources.check_every_n_steps: 1 to "
                                     "stop at the first one)")

    def totals(self) -> dict[str, float]:
        return {key: float(value) for key, value in self.sums.items()}


class EpochTally:
    """One epoch's clip-weighted stat sums, clip and batch counts, bad videos and losses."""

    def __init__(self, check_every: int, epoch: int) -> None:
        self.sums: dict[str, float] = defaultdict(float)
        self.watch = LossWatch(check_every, epoch)
        self.clips = self.masked = self.skipped = 0
        self.bad: list = []

    def add_bad(self, batch: dict, bad_report) -> None:
        batch_bad = list(batch.get("bad") or [])
        self.bad.extend(batch_bad)
        if bad_report is not None and batch_bad:
            bad_report.update(batch_bad)

    def record(self, prefix: str, loss, stats: dict, n: int, *, step: int) -> None:
        """A step's loss (kept on its device) and stats, weighted by its `n` clips; `prefix`
        `_mask_step_` for SDN's masked step."""
        self.watch.add(f"{prefix}loss", loss, n, step=step, stats=stats)
        for key, value in stats.items():
            if key != "loss":
                self.sums[f"{prefix}{key}"] += float(value) * n
        if prefix:
            self.masked += n
        else:
            self.clips += n

    def metrics(self, optimizer, elapsed: float, distributed: bool) -> dict[str, float]:
        """The epoch's means over clips (over all ranks) and its lr, timing and counts."""
        self.sums.update(self.watch.totals())
        totals = _reduce_sums({**self.sums, "_clips": self.clips, "_skipped": self.skipped,
                               "_masked": self.masked, "_bad": len(self.bad), "_time": elapsed},
                              distributed)
        clips_total, masked_total = totals.pop("_clips"), totals.pop("_masked")
        metrics = {k: v / clips_total for k, v in totals.items() if not k.startswith("_")
                   and clips_total > 0}
        metrics.update({k[1:]: v / masked_total for k, v in totals.items()
                        if k.startswith("_mask_step_") and masked_total > 0})
        if "acc" in metrics:
            metrics["train_top1"] = metrics.pop("acc")
        metrics.update({
            "lr": float(optimizer.param_groups[0]["lr"]),
            "epoch_time_s": elapsed,
            "clips_per_s": clips_total / elapsed if elapsed > 0 else math.nan,
            "bad_videos": totals["_bad"],
            "skipped_batches": totals["_skipped"] / max(world()[1], 1),
        })
        return metrics


def _reduce_sums(sums: dict[str, float], distributed: bool) -> dict[str, float]:
    """Sum every key over the ranks (the max for `_time`); keys may differ between ranks."""
    if not distributed:
        return dict(sums)
    gathered: list[dict[str, float]] = [None] * dist.get_world_size()  # type: ignore[list-item]
    dist.all_gather_object(gathered, dict(sums))
    out: dict[str, float] = defaultdict(float)
    for part in gathered:
        for key, value in part.items():
            out[key] = max(out[key], value) if key == "_time" else out[key] + value
    return dict(out)
