"""Data loaders built from `DataConfig`: VideoDataset + frame sampler + transforms + DataLoader.

Training loaders are sharded with a `DistributedSampler` built here from the Ray Train rank and
world size (then `ray.train.torch.prepare_data_loader(add_dist_sampler=False)` only moves batches to
the device): Ray's own sampler injection rebuilds the DataLoader without its
`multiprocessing_context`, and decoding workers must not be forked from a Ray worker.
Evaluation loaders are not sharded: rank 0 scores every split alone.

SDN's separate mask step (`optim.sdn_mask_step: separate`, SDN datasets/kinetics.py
`make_dataset_human_det`): a second training loader of masked clips over the videos that
`mask_eligible` accepts, the eligible list repeated (first in order, then shuffled copies) to the
length of the whole training list, shuffled again each epoch by its own sampler.

Handover (`handover`, every builder): ``"float"`` (the default) gives normalised float32 clips;
``"uint8"`` gives uint8 clips with their `ClipNormalizer` (``batch["clip_norm"]``), normalised by
`dear_ray.train.loop` on the device, with the same numbers. Clips are decoded with
`data.decoder`. Every loading process (each DataLoader worker, or the training process with
`num_workers: 0`) runs OpenCV single-threaded, as decord, and keeps freed clip buffers
(`prepare_loading_process`).
Training datasets keep `data.decoded_cache_mb` MiB of decoded clips each (`DecodedFramesCache`;
test-mode datasets none: an evaluation pass reads each clip once).
"""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import DataLoader, DistributedSampler

from dear_ray.config import DataConfig, ExperimentConfig
from dear_ray.data.annotations import read_annotation_list, read_class_names
from dear_ray.data.dataset import VideoDataset, collate_skip_bad, prepare_loading_process
from dear_ray.data.decode import VideoDecodeError, open_video
from dear_ray.data.presets import build_test_transform, build_train_transform
from dear_ray.data.sampling import DenseSampleFrames, SampleFrames, SegmentSampler
from dear_ray.data.sdn_inputs import load_detections, load_scene_labels, mask_eligible


def num_known_classes(data: DataConfig) -> int:
    """K: `data.num_classes`, else the number of names in `data.classes_file`."""
    if data.num_classes is not None:
        return data.num_classes
    names = read_class_names(data.resolve(data.classes_file))
    if len(names) < 2:
        raise ValueError(f"{data.resolve(data.classes_file)}: {len(names)} class name(s); "
                         "at least 2 known classes are needed")
    return len(names)


def build_sampler(data: DataConfig, *, test_mode: bool):
    """The frame sampler of `data.sampler` (in test mode `data.test_sampler` when set), with
    `test_views.num_clips` views in test mode (for `segments`: dense windows when > 1;
    `segment_sampling` chooses uniform or dense segments)."""
    clips = data.test_views.num_clips if test_mode else 1
    kind = (data.test_sampler or data.sampler) if test_mode else data.sampler
    if kind == "sample_frames":
        return SampleFrames(data.clip_len, data.frame_interval, clips, test_mode=test_mode)
    if kind == "dense":
        return DenseSampleFrames(data.clip_len, data.frame_interval, 1,
                                 sample_range=data.sample_range, num_sample_positions=clips,
                                 test_mode=test_mode)
    return SegmentSampler(data.num_segments, test_mode=test_mode, num_positions=clips,
                          sample_range=data.sample_range, dense=data.segment_sampling == "dense")


def build_transform(data: DataConfig, *, test_mode: bool, handover: str = "float"):
    """Train: resize + random crop (+ flip); test: resize + 1/3/10 crops, multi-view output, at
    `test_scale_short` / `test_crop_size` when set (DEAR tests at 256 after training at 224),
    rounded as `data.test_rounding` (SDN's sweeps: SDN's test rounding).
    Both normalise with `data.mean` / `data.std` (SDN: the ActivityNet mean, std 1), in the
    loader (``handover="float"``) or on the device (``"uint8"``; training clips with
    `data.color_jitter` stay float: the jitter works on float pixels before normalisation, and the
    loop takes either)."""
    if data.color_jitter and not test_mode:
        handover = "float"
    norm = {"mean": data.mean, "std": data.std, "handover": handover, "resize": data.resize}
    if test_mode:
        return build_test_transform(data.test_crop_size or data.crop_size,
                                    data.test_scale_short or data.scale_short,
                                    data.test_views.num_crops, rounding=data.test_rounding, **norm)
    ms = data.multiscale
    return build_train_transform(data.crop_size, data.scale_short, data.train_crop, data.flip,
                                 scales=ms.scales, max_wh_scale_gap=ms.max_wh_scale_gap,
                                 num_fixed_crops=ms.num_fixed_crops, color_jitter=data.color_jitter,
                                 **norm)


def split_is_known(split: str) -> bool:
    """A split of known classes (labels in [0, K)); any other split is an unknown set."""
    from dear_ray.splits import KNOWN_SPLITS

    return split in KNOWN_SPLITS


def _records(cfg: ExperimentConfig, split: str, num_classes: int):
    data = cfg.data
    lists = data.split_lists()
    if split not in lists:
        raise ValueError(f"split {split!r} has no list file; configured: {sorted(lists)}")
    records = read_annotation_list(lists[split], data.data_root,
                                   num_classes=num_classes if split_is_known(split) else None)
    if not records:
        raise ValueError(f"{lists[split]}: the {split} list is empty")
    return records


def separate_mask_step(cfg: ExperimentConfig, side_inputs: dict | None) -> bool:
    """Whether training takes SDN's separate masked step: an `sdn` head, human detections, and
    `optim.sdn_mask_step: separate`."""
    return (cfg.model.head == "sdn" and bool(side_inputs and side_inputs.get("detections"))
            and cfg.optim.sdn_mask_step == "separate")


def build_dataset(cfg: ExperimentConfig, split: str, *, test_mode: bool,
                  num_classes: int, side_inputs: dict | None = None,
                  handover: str = "float", features: dict | None = None) -> VideoDataset:
    """The `VideoDataset` of one configured split.

    Known splits' labels are checked against [0, num_classes); unknown sets keep their own ids.
    SDN side inputs are attached to training datasets only (`side_inputs`: as loaded by
    `load_side_inputs`); with the separate mask step the training items carry no masked clip
    (the masked batches come from `build_masked_loader`). `handover`: see the module docstring.
    `features`: the feature-cache entries of a model on the cache
    (`dear_ray.train.cached_features.cached_entries`): the split's `CachedFeatureDataset`.
    """
    data = cfg.data
    records = _records(cfg, split, num_classes)
    if features is not None:
        return _cached_dataset(records, split, features, test_mode=test_mode,
                               side_inputs=side_inputs)
    sampler = build_sampler(data, test_mode=test_mode)
    side = dict(side_inputs) if (side_inputs and not test_mode) else {}
    if separate_mask_step(cfg, side):
        side.pop("detections")
    return VideoDataset(records, sampler,
                        build_transform(data, test_mode=test_mode, handover=handover),
                        num_clips=sampler.num_views, test_mode=test_mode,
                        scene_labels=side.get("scene_labels"), detections=side.get("detections"),
                        mask_ratio=data.mask_ratio if side.get("detections") else 0.0,
                        seed=cfg.seed, decoder=data.decoder,
                        # training clips, and the test-mode pass over the training split
                        # (the same clips when the test sampling is the training one)
                        decoded_cache_mb=data.decoded_cache_mb
                        if not test_mode or split == "train" else 0)


def _cached_dataset(records, split: str, entries: dict, *, test_mode: bool,
                    side_inputs: dict | None):
    """The `CachedFeatureDataset` of `split`: its test-mode entry, or one entry an epoch."""
    from dear_ray.train.feature_cache import CachedFeatureDataset

    views = [None] if test_mode else sorted(v for s, v in entries if s == split and v is not None)
    if not views or (split, views[0]) not in entries:
        raise ValueError(f"the feature cache has no {'test' if test_mode else 'training'} entry "
                         f"for split {split!r}; cached: {sorted(map(str, entries))}")
    scene = None if test_mode else (side_inputs or {}).get("scene_labels")
    return CachedFeatureDataset(records, [entries[(split, v)] for v in views],
                                test_mode=test_mode, scene_labels=scene)


def _num_frames(record, data: DataConfig) -> int:
    if record.num_frames is not None:
        return record.num_frames
    try:
        return len(open_video(record.path, decoder=data.decoder))
    except VideoDecodeError:
        return 0


def masked_records(records, detections: dict, data: DataConfig, *, seed: int = 0) -> list:
    """SDN's masked training list: the `mask_eligible` records (frame counts from the list, else
    the decoder; an unreadable video is not eligible), repeated to ``len(records)``: the eligible
    list in order, then copies shuffled by a generator seeded with `seed`, truncated.

    Raises:
        ValueError: no video is eligible (naming the two thresholds).
    """
    eligible = []
    for r in records:
        boxes = detections.get(r.video_id, {})
        counted = sum(1 for b in boxes.values()
                      if len(b) and bool(np.any(np.asarray(b)[:, 4] > data.mask_min_box_score)))
        # a video has at least max(frame key) frames: most videos fail without being opened
        if data.mask_min_human_fraction > 0 and (
                not boxes or counted < data.mask_min_human_fraction * max(boxes)):
            continue
        n = _num_frames(r, data)
        if n > 0 and mask_eligible(boxes, n, min_human_fraction=data.mask_min_human_fraction,
                                   min_box_score=data.mask_min_box_score):
            eligible.append(r)
    if not eligible:
        raise ValueError(
            f"no training video has a human box scored > data.mask_min_box_score "
            f"({data.mask_min_box_score}) in >= data.mask_min_human_fraction "
            f"({data.mask_min_human_fraction}) of its frames: SDN's masked batch would be empty")
    rng = np.random.default_rng([seed, 7])
    out = list(eligible)
    while len(out) < len(records):
        out.extend(eligible[i] for i in rng.permutation(len(eligible)))
    return out[:len(records)]


def load_side_inputs(data: DataConfig, scene_kind: str = "soft") -> dict:
    """SDN's scene pseudo-labels (`scene_kind`: `soft` probabilities or `hard` classes, the sdn
    head's `scene_labels` option) and human detections, when the config names them."""
    out = {}
    if data.scene_labels is not None:
        out["scene_labels"] = load_scene_labels(data.resolve(data.scene_labels), scene_kind)
    if data.detections is not None:
        out["detections"] = load_detections(data.resolve(data.detections))
    return out


def _worker_init(worker_id: int) -> None:
    prepare_loading_process()  # one OpenCV thread, malloc keeps freed clip buffers


def make_loader(dataset, data: DataConfig, *, shuffle: bool = False, sampler=None,
                drop_last: bool = False, seed: int = 0, pin_memory: bool = False) -> DataLoader:
    """A DataLoader with `collate_skip_bad`; worker processes (if any) start by forkserver/spawn.
    Every process that loads clips is set up by `prepare_loading_process` (one OpenCV thread,
    malloc keeping freed clip buffers): each worker, or this process with ``num_workers: 0``.

    Workers are not persistent: each epoch's workers get the dataset after its `set_epoch`.
    `pin_memory` (GPU workers): batches in page-locked memory, so the step's `non_blocking`
    copies overlap the transfer with compute.
    """
    if data.num_workers == 0:
        prepare_loading_process()
    generator = torch.Generator()
    generator.manual_seed(seed)
    return DataLoader(
        dataset, batch_size=data.batch_size, shuffle=shuffle and sampler is None, sampler=sampler,
        num_workers=data.num_workers, collate_fn=collate_skip_bad, drop_last=drop_last,
        multiprocessing_context=data.multiprocessing_context if data.num_workers > 0 else None,
        worker_init_fn=_worker_init if data.num_workers > 0 else None, generator=generator,
        pin_memory=pin_memory)


def build_train_loader(cfg: ExperimentConfig, *, num_classes: int, rank: int = 0,
                       world_size: int = 1, side_inputs: dict | None = None,
                       handover: str = "float", pin_memory: bool = False,
                       features: dict | None = None
                       ) -> tuple[DataLoader, DistributedSampler | None]:
    """The training loader (this rank's shard) and its DistributedSampler (call `set_epoch`).

    The last incomplete batch is dropped when a full batch remains (a tiny last batch gives noisy
    BatchNorm statistics); DistributedSampler pads the shards to equal length, so every rank
    runs the same number of steps. `features`: as `build_dataset`.
    """
    dataset = build_dataset(cfg, "train", test_mode=False, num_classes=num_classes,
                            side_inputs=side_inputs, handover=handover, features=features)
    sampler = None
    if world_size > 1:
        sampler = DistributedSampler(dataset, num_replicas=world_size, rank=rank, shuffle=True,
                                     seed=cfg.seed)
    per_rank = -(-len(dataset) // world_size)
    loader = make_loader(dataset, cfg.data, shuffle=True, sampler=sampler,
                         drop_last=per_rank > cfg.data.batch_size, seed=cfg.seed,
                         pin_memory=pin_memory)
    if len(loader) == 0:
        raise ValueError(f"the training list {cfg.data.split_lists()['train']} gives no batch "
                         f"({len(dataset)} videos, batch_size {cfg.data.batch_size})")
    return loader, sampler


def build_eval_loader(cfg: ExperimentConfig, split: str, *, num_classes: int,
                      handover: str = "float", features: dict | None = None) -> DataLoader:
    """A test-mode loader over the whole split (multi-view clips `(B, V, C, T, H, W)`; the
    cached outputs with `features`, as `build_dataset`)."""
    dataset = build_dataset(cfg, split, test_mode=True, num_classes=num_classes,
                            handover=handover, features=features)
    return make_loader(dataset, cfg.data, shuffle=False, seed=cfg.seed)



def build_masked_loader(cfg: ExperimentConfig, *, num_classes: int, rank: int = 0,
                        world_size: int = 1, side_inputs: dict | None = None,
                        handover: str = "float", pin_memory: bool = False
                        ) -> tuple[DataLoader | None, DistributedSampler | None]:
    """SDN's separate masked loader (items: ``clip`` = the masked clip, masked with probability
    `data.mask_ratio`) and its DistributedSampler, or ``(None, None)`` without the separate step.

    Same batch size and drop-last rule as the training loader, and as many videos (repeated
    eligible ones, `masked_records`), so the two loaders give the same number of batches.
    """
    if not separate_mask_step(cfg, side_inputs):
        return None, None
    data = cfg.data
    records = _records(cfg, "train", num_classes)
    repeated = masked_records(records, side_inputs["detections"], data, seed=cfg.seed)
    sampler = build_sampler(data, test_mode=False)
    dataset = VideoDataset(repeated, sampler,
                           build_transform(data, test_mode=False, handover=handover),
                           num_clips=sampler.num_views, detections=side_inputs["detections"],
                           mask_ratio=data.mask_ratio, seed=cfg.seed + 1, masked_only=True,
                           decoder=data.decoder, decoded_cache_mb=data.decoded_cache_mb)
    dist_sampler = None
    if world_size > 1:
        dist_sampler = DistributedSampler(dataset, num_replicas=world_size, rank=rank,
                                          shuffle=True, seed=cfg.seed + 1)
    per_rank = -(-len(dataset) // world_size)
    loader = make_loader(dataset, data, shuffle=True, sampler=dist_sampler,
                         drop_last=per_rank > data.batch_size, seed=cfg.seed + 1,
                         pin_memory=pin_memory)
    return loader, dist_sampler
