"""Evaluation: every Ray Train worker scores a shard of each split, rank 0 writes the stores.

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

View averaging (`eval.average_clips`): how the V test views (clips x crops) of a video are
combined, passed to `Recognizer.predict(average_clips=...)`: `score` = mean of the logits, `prob` =
mean of the per-view softmax (stored as its log). `released` reproduces the test code of the
codebase that released the model (`average_clips_for`): SDN's for SDN's network (`r3d18_a`, whose
plain classifier SDN trains as its baseline) and the sdn head, DEAR's scripts for the rest:

| head | deterministic logits | stochastic passes | where (DEAR b752998 / SDN b92b9ca) |
|---|---|---|---|
| edl, edl_avu, dear, dear_alt | score | - | configs/recognition/*/inference_*_enn.py |
| softmax, train split | prob | prob | experiments/baseline_softmax.py (`average_clips='prob'`); get_threshold.py with inference_*_dnn.py |
| softmax, test splits | score | prob | baseline_openmax.py (`'score'`, then softmax) for MSP; ood_detection.py with inference_*_dnn.py (`'prob'`) for MC dropout |
| bnn, rpl | prob | prob | inference_*_bnn.py, inference_*_rpl.py |
| sdn; softmax on `r3d18_a` (SDN's baseline) | prob | prob | SDN libs/test.py: softmax per clip, then the mean, for every model |
| psl | score | - | PSL tests 1 clip x 1 crop (Jun-CEN/PSL tools/test_net_open.py) |

When the logits and the passes of a split need different averaging (softmax test splits with
`eval.stochastic_passes > 1`), the split is predicted twice.

Precision (`eval.precision`): stores are computed in fp32 unless `amp`, whatever
`resources.amp` says for training (bf16 autocast moves vacuity by ~1%, docs/metrics.md).
Validation during training keeps the training autocast (its top-1 is not a stored score).
"""

from __future__ import annotations

import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

from dear_ray.config import ExperimentConfig
from dear_ray.methods import HEAD_SPECS, head_spec, released_average_clips
from dear_ray.splits import KNOWN_SPLITS, STATIC_BIAS_SPLITS
from dear_ray.train.loop import Predictions, predict

AVERAGE_CLIPS_SETTINGS = ("released", "score", "prob")
# SDN's network: only SDN's code trains it, and its test (libs/test.py) averages the per-clip
# softmax for every model it trains (the baseline classifier too)
SDN_BACKBONES = ("r3d18_a",)


def average_clips_for(head: str, split: str, setting: str, *, backbone: str,
                      stochastic: bool = False) -> str:
    """How the test views of `split` are averaged for a model with `head` on `backbone`: `score`
    or `prob`.

    Args:
        head: the trained head (`model.head`).
        split: the evaluated split (`train` is the threshold split; every other is a test split).
        setting: `eval.average_clips`: `score` / `prob` as given, `released` per the module table.
        backbone: `model.backbone`: a softmax head on SDN's network (`SDN_BACKBONES`) follows
            SDN's test code, on any other DEAR's scripts.
        stochastic: for the stochastic passes (`sample_logits`) instead of the deterministic logits
            (they differ only for DEAR's softmax test splits: MC dropout uses `prob`).
    """
    if setting not in AVERAGE_CLIPS_SETTINGS:
        raise ValueError(f"eval.average_clips must be one of {AVERAGE_CLIPS_SETTINGS}, got {setting!r}")
    if setting != "released":
        return setting
    spec = HEAD_SPECS.get(head)
    if spec is None:
        raise ValueError(f"average_clips_for: no released view averaging known for head {head!r}")
    if spec.average_clips == "by_split" and backbone in SDN_BACKBONES:
        return "prob"
    return released_average_clips(head, split, stochastic=stochastic)


def eval_autocast(cfg: ExperimentConfig, amp: bool) -> bool:
    """Whether the score stores run under autocast: only with `eval.precision: amp` and the
    training autocast available (`amp`: `resources.amp` on a GPU)."""
    return bool(amp) and cfg.eval.precision == "amp"


def mean_probability_logits(sample_logits: np.ndarray) -> np.ndarray:
    """``log(mean_s softmax(z_s))`` over the passes ``(S, N, K) -> (N, K)``: logits whose softmax is
    the mean probability over the passes, so their argmax is DEAR's stochastic prediction
    (experiments/ood_detection.py `run_stochastic_inference`: argmax of the mean of the passes'
    scores). The mean of the pass logits, used before, has another argmax in general."""
    z = np.asarray(sample_logits, dtype=np.float64)
    z = z - z.max(axis=-1, keepdims=True)
    log_p = z - np.log(np.exp(z).sum(axis=-1, keepdims=True))
    m = log_p.max(axis=0)
    out = m + np.log(np.exp(log_p - m).mean(axis=0))
    return out.astype(np.float32)


def stores_dir(cfg: ExperimentConfig, trial_name: str) -> Path:
    """`<run_dir>/<name>/stores/<trial>/`."""
    return cfg.run_root() / "stores" / trial_name


def predict_split(model, loader, cfg: ExperimentConfig, split: str, *, device, amp: bool,
                  bad_report=None) -> Predictions:
    """One split's predictions with the head's stochastic passes and view averaging; bnn logits
    are the passes' mean probability (`mean_probability_logits`)."""
    head, setting = cfg.model.head, cfg.eval.average_clips
    passes = cfg.eval.stochastic_passes if head_spec(head).stochastic else 1
    how = average_clips_for(head, split, setting, backbone=cfg.model.backbone)
    how_passes = average_clips_for(head, split, setting, backbone=cfg.model.backbone,
                                   stochastic=True)
    if passes > 1 and how_passes != how:
        preds = predict(model, loader, device=device, amp=amp, bad_report=bad_report,
                        average_clips=how)
        sampled = predict(model, loader, device=device, stochastic_passes=passes, amp=amp,
                          bad_report=bad_report, average_clips=how_passes)
        if sampled.video_ids != preds.video_ids:
            raise RuntimeError(f"split {split}: the two prediction passes decoded different "
                               "videos (a flaky decoder?)")
        preds.sample_logits = sampled.sample_logits
    else:
        preds = predict(model, loader, device=device, stochastic_passes=passes, amp=amp,
                        bad_report=bad_report, average_clips=how)
    if head_spec(head).logits_from_passes:  # DEAR's BNN: the mean over weight draws of their softmax
        preds.logits = mean_probability_logits(preds.sample_logits)
    return preds


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

    from dear_ray.train.data import build_dataset, make_loader

    handover = "uint8" if getattr(device, "type", "cpu") == "cuda" else "float"
    dataset = build_dataset(cfg, split, test_mode=True, num_classes=num_classes, handover=handover)
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


def validate(model, cfg: ExperimentConfig, num_classes: int, device, amp: bool) -> float | None:
    """Top-1 on the `val` split (test pipeline, the released view averaging of `val`, no
    stochastic passes), sharded over the ranks (rank 0's model, `sync_from_rank0`); None on ranks
    other than 0."""
    sync_from_rank0(model)
    preds = predict_distributed(model, cfg, "val", num_classes=num_classes, device=device,
                                amp=amp, stochastic=False)
    return None if preds is None else preds.top1()


def _is_known(split: str) -> bool:
    """A split of known-class videos (labels in [0, K)): `KNOWN_SPLITS`, the static-bias splits
    `test_scuba` / `test_scufo` included; anything else is an unknown set."""
    return split in KNOWN_SPLITS


def store_name(split: str) -> str:
    """The store file's stem: the split, or `unknown_<name>` for an unknown set not named
    `unknown`."""
    return split if _is_known(split) or split == "unknown" else f"unknown_{split}"


def check_static_bias(cfg: ExperimentConfig, num_classes: int) -> None:
    """Before `test_scuba` / `test_scufo` are scored: their lists must pair (same video ids, same
    labels; `dear_ray.config.data.check_static_bias_lists`), else the report could not pair them.

    Raises:
        ValueError: every problem, one a line, naming the `data.static_bias` field and the file.
    """
    from dear_ray.config.data import check_static_bias_lists

    if not set(cfg.eval_splits()) & set(STATIC_BIAS_SPLITS):
        return
    problems = check_static_bias_lists(cfg.data, num_classes)
    if problems:
        raise ValueError("the static-bias lists cannot be scored:\n" + "\n".join(problems))


def evaluate_splits(model, cfg: ExperimentConfig, trial: str, num_classes: int, device,
                    amp: bool, *, logger=None) -> dict[str, float]:
    """Score every split of `cfg.eval_splits()` and write its store; called on EVERY rank.

    Args:
        model: the recognizer (unwrapped from DDP), on `device`.
        amp: the training autocast is available (`resources.amp` on a GPU); the stores use it only
            with `eval.precision: amp`.
        logger: rank 0's `TrialLogger` (stores are logged as artifacts), or None.

    Returns (rank 0; the other ranks get `{}`): `<split>_top1` for known splits
    (`train_eval_top1` for the training split, scored with the test pipeline),
    `<split>_bad_videos` for all, and `<split>_eval_time_s` (wall time of the sharded prediction,
    gather included; `train_eval_eval_time_s` for the training split) and `eval_workers` (the
    ranks that shared the splits).

    For the softmax and bnn heads `eval.stochastic_passes` passes are taken (MC dropout / weight
    sampling) and stored as `sample_logits`, so MC dropout is evaluated post hoc from this model.
    The static-bias splits (`test_scuba`, `test_scufo`) are known splits here; their lists are
    checked first (`check_static_bias`).
    """
    check_static_bias(cfg, num_classes)
    rank, world = _rank_world()
    sync_from_rank0(model)  # every shard is scored by the model of rank 0 (the checkpoint's)
    out_dir = stores_dir(cfg, trial)
    if rank == 0:
        out_dir.mkdir(parents=True, exist_ok=True)
    use_amp = eval_autocast(cfg, amp)
    metrics: dict[str, float] = {"eval_workers": float(world)} if rank == 0 else {}
    classifier = write_classifier_file(model, cfg, out_dir) if rank == 0 else None
    for split in cfg.eval_splits():
        clock = time.perf_counter()
        preds = predict_distributed(model, cfg, split, num_classes=num_classes, device=device,
                                    amp=use_amp)
        if preds is None:
            continue
        key = "train_eval" if split == "train" else split  # train_top1 is the training-time one
        metrics[f"{key}_eval_time_s"] = time.perf_counter() - clock
        path = write_store(out_dir / f"{store_name(split)}.parquet", preds, cfg=cfg, split=split,
                           num_classes=num_classes, trial=trial, classifier=classifier)
        if _is_known(split):
            metrics[f"{key}_top1"] = preds.top1()
        metrics[f"{key}_bad_videos"] = float(len(preds.bad))
        if rank == 0 and preds.bad:
            from dear_ray.train.bad_videos import append_bad_videos, bad_videos_dir

            append_bad_videos(bad_videos_dir(cfg.run_root(), trial) / "eval.csv", preds.bad,
                              split=split, epoch=None, rank=0)
        if logger is not None:
            logger.log_artifact(path, artifact_path="stores")
    return metrics


def write_classifier_file(model, cfg: ExperimentConfig, out_dir: Path) -> str | None:
    """Rank 0: the linear classifier of a softmax / sdn model beside its stores
    (`dear_ray.scores.write_classifier`: `classifier.npz`, weight (K, F), bias (K,)), which the
    post-hoc detectors ViM, ReAct and ASH need; the file name for the stores' metadata, or None.

    `logits = features @ W.T + b` holds for the score-averaged splits of every backbone (TSM too:
    fc is linear, so fc per segment then the mean equals fc of the segment-mean feature).
    """
    from dear_ray.scores.classifier import CLASSIFIER_FILE, write_classifier

    fc = getattr(getattr(model, "cls_head", None), "fc_cls", None)
    if not head_spec(cfg.model.head).posthoc or not isinstance(fc, torch.nn.Linear):
        return None
    bias = None if fc.bias is None else fc.bias.detach().float().cpu().numpy()
    write_classifier(out_dir, fc.weight.detach().float().cpu().numpy(), bias)
    return CLASSIFIER_FILE


def write_store(path: Path, preds: Predictions, *, cfg: ExperimentConfig, split: str,
                num_classes: int, trial: str, classifier: str | None = None) -> Path:
    """One split's score store (`dear_ray.scores.store`), with every score the head supports.

    Unknown sets are stored with `split="unknown"` and their name as `dataset`, in
    `unknown.parquet` (the set named `unknown`) or `unknown_<name>.parquet`. The meta records the
    view averaging and precision used (`average_clips`, `precision`).
    """
    from dear_ray.scores import compute_scores
    from dear_ray.scores.store import StoreMeta, write_score_store

    # the evidence function of an evidential head (its `head_options`, `exp` by default): the
    # stores' vacuity and Dirichlet MSP, and the post-hoc evidential rows that read `extra`
    evidence = str(cfg.model.head_options.get("evidence", "exp"))
    scores = compute_scores(cfg.model.head, preds.logits, sample_logits=preds.sample_logits,
                            evidence=evidence)
    known = _is_known(split)
    head, setting = cfg.model.head, cfg.eval.average_clips
    views = average_clips_for(head, split, setting, backbone=cfg.model.backbone)
    if preds.sample_logits is not None:
        passes = average_clips_for(head, split, setting, backbone=cfg.model.backbone,
                                   stochastic=True)
        views += f"/{passes}"
    meta = StoreMeta(split=split if known else "unknown",
                     dataset=cfg.data.dataset if known else split, num_known=num_classes,
                     head=head, checkpoint=(cfg.model.pretrained if cfg.eval_only
                                            else f"{trial}/epoch_{cfg.optim.epochs - 1}"),
                     run=trial, extra={"backbone": cfg.model.backbone, "seed": str(cfg.seed),
                                       "name": cfg.name, "average_clips": views,
                                       # which videos: two data sets may share a name and ids
                                       "data_root": str(cfg.data.data_root),
                                       "precision": cfg.eval.precision,
                                       **({"evidence": evidence} if head_spec(head).evidential else {}),
                                       **({"classifier": classifier} if classifier else {})})
    write_score_store(path, video_ids=preds.video_ids, labels=preds.labels, logits=preds.logits,
                      features=preds.features, sample_logits=preds.sample_logits, scores=scores,
                      meta=meta)
    return path


__all__ = ["AVERAGE_CLIPS_SETTINGS", "Shard", "average_clips_for", "batch_seed", "check_static_bias",
           "eval_autocast", "evaluate_splits", "mean_probability_logits", "merge_shards",
           "predict_distributed", "predict_shard", "predict_split", "shard_range", "store_name",
           "stores_dir", "sync_from_rank0", "validate", "write_store"]
