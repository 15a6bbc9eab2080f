"""Sharded prediction: every Ray Train worker scores a shard of each split, rank 0 merges them.

`evaluate_splits` scores every split of `cfg.eval_splits()` and writes its store
(`<run_dir>/<name>/stores/<trial>/<split>.parquet`, `dear_ray.scores.store`). It runs on EVERY
rank of a trial (a collective: each rank must call it), after the last training epoch or, with
`eval_only`, in place of training (`dear_ray.train.driver`).

Sharding (`shard_range`): the split's videos, in list order, are cut into the batches of
`data.batch_size` that one worker would predict; rank r of W takes the contiguous batches
`[ceil(r B / W), ceil((r + 1) B / W))` of the B batches, so no video is padded in, duplicated or dropped
(DistributedSampler would pad), and every batch holds the same videos whatever W is. Before each
batch the global torch RNG is seeded from (`seed`, split, batch index) (`batch_seed`), so the
stochastic passes (MC-dropout masks, BNN weight draws) of a video do not depend on the number of
workers either: 1 and 2 workers write the same stores. Rank 0 gathers the shards
(`torch.distributed.gather_object`), checks that every video of the split is there exactly once
(scored or bad), applies `data.max_bad_fraction` to the whole split, and writes the one store.
The caller's RNG state is restored afterwards. Validation during training (`validate`) is sharded
the same way.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.distributed as dist

from dear_ray.config import ExperimentConfig
from dear_ray.train.loop import Predictions, predict
from dear_ray.train.prediction import average_clips_for, predict_split


def _rank_world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def shard_range(num_videos: int, batch_size: int, rank: int, world_size: int) -> tuple[range, int]:
    """Rank `rank`'s videos (dataset indices, contiguous) and the index of its first batch.

    The `ceil(num_videos / batch_size)` batches B of a one-worker pass are split into
    `world_size` contiguous runs of whole batches, rank r from batch `ceil(r * B / world_size)`
    (sizes differ by at most one batch; with fewer batches than ranks the last ranks get none).
    The shards of all ranks are disjoint and cover `range(num_videos)` exactly.
    """
    if not 0 <= rank < world_size:
        raise ValueError(f"shard_range: rank {rank} is not in [0, {world_size})")
    batches = -(-num_videos // batch_size)
    lo, hi = -(-rank * batches // world_size), -(-(rank + 1) * batches // world_size)
    return range(lo * batch_size, min(hi * batch_size, num_videos)), lo


def batch_seed(seed: int, split: str, batch: int) -> int:
    """The torch seed of batch `batch` of `split` (a 63-bit int from a numpy SeedSequence)."""
    key = [seed, zlib.crc32(split.encode()), batch]
    return int(np.random.SeedSequence(key).generate_state(2, np.uint64)[0] >> np.uint64(1))


class _SeededBatches:
    """Iterates `loader`, seeding the global torch RNG (all devices) before yielding each batch
    with `batch_seed(seed, split, first + j)`: the passes of batch j see the same random draws
    whichever rank predicts it."""

    def __init__(self, loader, *, seed: int, split: str, first: int) -> None:
        self.loader, self.dataset = loader, loader.dataset
        self.seed, self.split, self.first = seed, split, first

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self):
        for j, batch in enumerate(self.loader):
            torch.manual_seed(batch_seed(self.seed, self.split, self.first + j))
            yield batch


class _BadCollector:
    """A `bad_report` that only records (the limit is applied to the whole split on rank 0)."""

    def __init__(self) -> None:
        self.bad: list = []

    def update(self, bad) -> None:
        self.bad.extend(bad)


@dataclass
class Shard:
    """One rank's part of a split: its predictions (None when it had no decodable video) and
    the bad samples it met, over `num_videos` videos starting at dataset index `start`."""

    start: int
    num_videos: int
    preds: Predictions | None
    bad: list = field(default_factory=list)


def predict_shard(model, cfg: ExperimentConfig, split: str, *, num_classes: int, rank: int,
                  world_size: int, device, amp: bool, stochastic: bool = True) -> Shard:
    """Predict rank `rank`'s shard of `split` (`shard_range`) with the test pipeline, the head's
    view averaging and (with `stochastic`) its passes (`predict_split`); the RNG is restored."""
    from torch.utils.data import Subset

    from dear_ray.train.cached_features import cached_entries
    from dear_ray.train.data import build_dataset, make_loader

    handover = "uint8" if getattr(device, "type", "cpu") == "cuda" else "float"
    dataset = build_dataset(cfg, split, test_mode=True, num_classes=num_classes, handover=handover,
                            features=cached_entries(model))
    indices, first = shard_range(len(dataset), cfg.data.batch_size, rank, world_size)
    shard = Shard(start=indices.start, num_videos=len(indices), preds=None)
    if not indices:
        return shard
    loader = _SeededBatches(make_loader(Subset(dataset, list(indices)), cfg.data, seed=cfg.seed),
                            seed=cfg.seed, split=split, first=first)
    collector = _BadCollector()
    devices = [device] if getattr(device, "type", "cpu") == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        try:
            if stochastic:
                shard.preds = predict_split(model, loader, cfg, split, device=device, amp=amp,
                                            bad_report=collector)
            else:
                how = average_clips_for(cfg.model.head, split, cfg.eval.average_clips,
                                        backbone=cfg.model.backbone)
                shard.preds = predict(model, loader, device=device, amp=amp,
                                      bad_report=collector, average_clips=how)
        except ValueError:
            if len({b.index for b in collector.bad}) < len(indices):
                raise
            # every video of the shard is bad: the split-wide limit decides on rank 0
    shard.bad = list({b.index: b for b in collector.bad}.values())
    return shard


def merge_shards(shards: list[Shard], split: str, dataset_size: int) -> Predictions:
    """The split's predictions from all ranks' shards, in rank (= list) order.

    Raises:
        RuntimeError: a video is missing or appears twice (the shards must cover the split).
        ValueError: no decodable video in the whole split.
    """
    parts = [s.preds for s in shards if s.preds is not None]
    bad = [b for s in shards for b in s.bad]
    covered = sorted(i for s in shards for i in range(s.start, s.start + s.num_videos))
    if covered != list(range(dataset_size)):
        raise RuntimeError(f"split {split}: the shards cover {len(covered)} dataset positions "
                           f"({len(set(covered))} distinct) of {dataset_size}")
    if not parts:
        raise ValueError(f"split {split}: no decodable video ({len(bad)} bad): nothing to predict")
    ids = [v for p in parts for v in p.video_ids]
    if len(ids) + len(bad) != dataset_size or len(set(ids)) != len(ids):
        raise RuntimeError(f"split {split}: {len(ids)} predicted ({len(set(ids))} distinct) + "
                           f"{len(bad)} bad videos, expected {dataset_size} in all")
    samples = [p.sample_logits for p in parts]
    return Predictions(
        video_ids=ids, labels=np.concatenate([p.labels for p in parts]),
        logits=np.concatenate([p.logits for p in parts]),
        features=np.concatenate([p.features for p in parts]),
        sample_logits=None if samples[0] is None else np.concatenate(samples, axis=1), bad=bad)


def predict_distributed(model, cfg: ExperimentConfig, split: str, *, num_classes: int, device,
                        amp: bool, stochastic: bool = True) -> Predictions | None:
    """`split` predicted by every rank of the process group (one rank without one), gathered
    on rank 0; rank 0 returns the merged predictions, the others None. Every rank raises when the
    split has too many bad videos (`data.max_bad_fraction`) or cannot be merged."""
    from dear_ray.data.dataset import BadVideoReport

    rank, world = _rank_world()
    shard = predict_shard(model, cfg, split, num_classes=num_classes, rank=rank,
                          world_size=world, device=device, amp=amp, stochastic=stochastic)
    shards = [shard]
    if world > 1:
        if getattr(device, "type", "cpu") == "cuda":
            torch.cuda.set_device(device)  # gather_object on NCCL uses the current device
        shards = [None] * world if rank == 0 else None
        dist.gather_object(shard, shards, dst=0)
    merged, error = None, None
    if rank == 0:
        size = sum(s.num_videos for s in shards)
        try:
            merged = merge_shards(shards, split, size)
            BadVideoReport(size, cfg.data.max_bad_fraction, name=split).update(merged.bad)
        except (ValueError, RuntimeError) as err:  # TooManyBadVideosError is a ValueError
            error = err
    message = None if error is None else str(error)
    if world > 1:  # every rank stops together (a rank left waiting in the next gather hangs)
        box = [message]
        dist.broadcast_object_list(box, src=0)
        message = box[0]
    if error is not None:
        raise error
    if message is not None:
        raise RuntimeError(f"split {split}: rank 0 could not merge the shards: {message}")
    return merged


def sync_from_rank0(model) -> None:
    """Copy rank 0's parameters and buffers to every rank (no-op without a process group).

    DDP keeps the parameters equal, but each rank's BatchNorm running statistics move with its own
    last forward (DDP broadcasts rank 0's buffers only at the START of a forward), so after
    training the ranks' models differ slightly; the shards must all be scored by rank 0's model,
    the one the checkpoint holds."""
    _, world = _rank_world()
    if world == 1:
        return
    with torch.no_grad():
        for tensor in model.state_dict().values():
            if tensor.is_contiguous():
                dist.broadcast(tensor, src=0)
            else:  # e.g. channels_last_3d weights
                buffer = tensor.contiguous()
                dist.broadcast(buffer, src=0)
                tensor.copy_(buffer)
