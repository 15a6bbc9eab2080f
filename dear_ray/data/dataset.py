"""`VideoDataset`: annotation records -> decoded, sampled, transformed clips; bad videos survive.

A video that cannot be decoded (unreadable, truncated/corrupt, zero frames) never kills an epoch:
``dataset[i]`` returns a `BadSample` instead of raising, `collate_skip_bad` drops those from the
batch and lists them under ``batch["bad"]``, and a `BadVideoReport` counts them across an epoch and
raises `TooManyBadVideosError` only once more than ``max_bad_fraction`` of the dataset is bad.

Clips are float32 and normalised, or, with a ``handover="uint8"`` transform, uint8 channels-last
views that `collate_skip_bad` stacks without a transposing copy and hands over with the transform's
`ClipNormalizer` under ``batch["clip_norm"]``: the training loop normalises them on the device
(`dear_ray.train.loop`).

Randomness: item ``i`` draws from ``np.random.default_rng([seed, epoch, i])`` (training) or
``np.random.default_rng([seed, i])`` (test mode), so results do not depend on DataLoader workers
and an epoch is reproducible; call `VideoDataset.set_epoch` at the start of each epoch.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import Dataset, default_collate

from dear_ray.data.annotations import VideoRecord
from dear_ray.data.decode import (
    DecodedFramesCache,
    VideoDecodeError,
    check_decoder,
    read_clip,
)
from dear_ray.data.presets import VideoTransform
from dear_ray.data.sampling import FrameSampler
from dear_ray.data.sdn_inputs import mask_humans


@dataclass(frozen=True)
class BadSample:
    """Stands in for a video that could not be decoded.

    Attributes:
        index: the dataset index.
        video_id: the record's video id.
        path: the video file (as a string).
        reason: the decoder's complaint.
    """

    index: int
    video_id: str
    path: str
    reason: str


class TooManyBadVideosError(RuntimeError):
    """More than the allowed fraction of a dataset could not be decoded."""


class VideoDataset(Dataset):
    """Decoded clips for a list of `VideoRecord`s.

    Args:
        records: from `read_annotation_list`.
        sampler: a frame sampler (`dear_ray.data.sampling`).
        transform: a `VideoTransform` (`build_train_transform` / `build_test_transform`).
        num_clips: clips per video the transform splits the frames into; None = the sampler's
            ``num_views`` (a given value must equal it).
        test_mode: item randomness ignores the epoch (deterministic evaluation).
        scene_labels: ``{video_id: float32 (P,) or int64 scalar}`` from `load_scene_labels` (soft
            or hard); every record must have one.
        detections: ``{video_id: {frame (1-based): (N, 5)}}`` from `load_detections`; a video
            missing from it has no boxes.
        mask_ratio: with `detections`, the probability (drawn once per video and item) that the
            human boxes are masked in ``"masked_clip"``; otherwise ``masked_clip`` shows the same
            pixels as ``clip``.
        seed: base seed of the per-item generators.
        mask_score_threshold: boxes scoring below it are never masked (SDN: 0.3).
        num_threads: decoder threads per video.
        decoder: ``"pyav"``, ``"decord"`` or ``"torchcodec"`` (`data.decoder`,
            `dear_ray.data.decode`).
        masked_only: with `detections`, ``"clip"`` IS the (possibly) masked clip and there is no
            ``"masked_clip"``: the items of SDN's separate masked batch (``Kinetics_adv_msk``).
        decoded_cache_mb: MiB of decoded clips this dataset keeps in each process
            (`DecodedFramesCache`, `data.decoded_cache_mb`; 0 = none): a clip whose video and
            frame indices come again is not decoded again (the transform still runs, with its
            own random draws). Useful for small data sets read in-process (``num_workers: 0``)
            or by long-lived workers: the cache of a DataLoader worker ends with it.

    Items are dicts ``{"clip": Tensor, "label": int, "index": int, "video_id": str}`` (clip shape
    as the transform returns it: ``(C, T, H, W)`` or ``(V, C, T, H, W)``), plus ``"scene"``
    (float32 ``(P,)`` soft or int64 ``()`` hard) with `scene_labels` and ``"masked_clip"`` (same
    shape as ``clip``, same crop and flip) with `detections`; or a `BadSample`.
    """

    def __init__(
        self,
        records: Sequence[VideoRecord],
        sampler: FrameSampler,
        transform: VideoTransform,
        *,
        num_clips: int | None = None,
        test_mode: bool = False,
        scene_labels: Mapping[str, np.ndarray] | None = None,
        detections: Mapping[str, Mapping[int, np.ndarray]] | None = None,
        mask_ratio: float = 0.0,
        seed: int = 0,
        mask_score_threshold: float = 0.3,
        num_threads: int = 1,
        masked_only: bool = False,
        decoder: str = "pyav",
        decoded_cache_mb: int = 0,
    ) -> None:
        if num_clips is not None and num_clips != sampler.num_views:
            raise ValueError(
                f"num_clips={num_clips} but the sampler {sampler!r} yields {sampler.num_views} clips"
            )
        check_decoder(decoder)
        if decoded_cache_mb < 0:
            raise ValueError(f"decoded_cache_mb must be >= 0 (0 = no cache), got {decoded_cache_mb}")
        if masked_only and detections is None:
            raise ValueError("masked_only=True needs detections (the human boxes to mask)")
        if not 0.0 <= mask_ratio <= 1.0:
            raise ValueError(f"mask_ratio must lie in [0, 1], got {mask_ratio}")
        if scene_labels is not None:
            missing = [r.video_id for r in records if r.video_id not in scene_labels]
            if missing:
                raise ValueError(
                    f"{len(missing)} of {len(records)} videos have no scene label, e.g. {missing[:5]}"
                )
        self.records = list(records)
        self.sampler = sampler
        self.transform = transform
        self.num_clips = sampler.num_views
        self.test_mode = test_mode
        self.scene_labels = scene_labels
        self.detections = detections
        self.mask_ratio = mask_ratio
        self.seed = seed
        self.mask_score_threshold = mask_score_threshold
        self.num_threads = num_threads
        self.masked_only = masked_only
        self.decoder = decoder
        self.cache = (DecodedFramesCache.shared(decoded_cache_mb * 2**20, decoder)
                      if decoded_cache_mb > 0 else None)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Select the random stream of `epoch` (training mode)."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.records)

    def item_rng(self, index: int) -> np.random.Generator:
        """The generator item `index` draws from in the current epoch."""
        key = [self.seed, index] if self.test_mode else [self.seed, self.epoch, index]
        return np.random.default_rng(key)

    def __getitem__(self, index: int) -> dict | BadSample:
        record = self.records[index]
        rng = self.item_rng(index)
        try:
            clip = read_clip(
                record.path, self.sampler, rng, num_threads=self.num_threads, decoder=self.decoder,
                cache=self.cache,
            )
        except VideoDecodeError as exc:
            return BadSample(index, record.video_id, str(record.path), exc.reason)
        # the transform runs on the distinct frames and copies the views out (frame_map)
        frames, views = clip.frames, {"num_clips": self.num_clips, "frame_map": clip.frame_map}
        item: dict = {"label": record.label, "index": index, "video_id": record.video_id}
        if self.detections is not None:
            boxes = self.detections.get(record.video_id, {})
            masked = frames
            if rng.random() < self.mask_ratio and boxes:
                masked = mask_humans(
                    frames, clip.frame_indices, boxes, score_threshold=self.mask_score_threshold
                )
            if self.masked_only:
                item["clip"] = self.transform(masked, rng, **views)
            else:
                item["clip"], item["masked_clip"] = self.transform.apply_many(
                    [frames, masked], rng, **views
                )
        else:
            item["clip"] = self.transform(frames, rng, **views)
        if self.transform.handover == "uint8":
            item["clip_norm"] = self.transform.normalizer
        if self.scene_labels is not None:
            label = np.asarray(self.scene_labels[record.video_id])
            item["scene"] = torch.as_tensor(label.astype(np.float32 if label.ndim else np.int64))
        return item


CLIP_KEYS = ("clip", "masked_clip")


def retain_freed_memory(max_bytes: int = 2**30) -> bool:
    """Make glibc's malloc serve and keep clip-sized buffers in the heap; for a process that
    loads clips (`prepare_loading_process`).

    By default, buffers above malloc's mmap threshold are fresh pages each time and go back to
    the system when freed; in a loading loop (decoded frames, resized bands and crops, output
    clips: 5-20 MB a training clip, 189 MB uint8 / 754 MB float for 10 x 3 test views at 256)
    every clip then pays its page faults again, ~1.2 ms a MB here (500-3000 faults a training
    clip measured; 184,000 for the float test views). Raising the mmap threshold to `max_bytes`
    and the trim threshold to 4x that (at most 2 GiB: mallopt takes an int) keeps them for reuse,
    at the cost of the process keeping its peak heap. Allocations of the main thread only (other
    threads' arenas map large buffers anyway).

    Returns:
        Whether both settings took (False off glibc).
    """
    import ctypes

    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3  # glibc's malloc.h
    int_max = 2**31 - 1
    return bool(libc.mallopt(m_mmap_threshold, min(int(max_bytes), int_max))) and bool(
        libc.mallopt(m_trim_threshold, min(4 * int(max_bytes), int_max)))


def prepare_loading_process() -> None:
    """Set up the current process for loading clips: a DataLoader worker (`worker_init_fn`) or,
    with ``num_workers: 0``, the training process itself.

    One OpenCV thread (its default is one per core: every worker, or the training process next
    to its model, would start as many for each frame's resize; the pixels do not depend on it)
    and `retain_freed_memory`. torch's threads are left alone: DataLoader workers run one, and
    the training process keeps its own for the model.
    """
    import cv2

    cv2.setNumThreads(1)
    retain_freed_memory()


def stack_clips(clips: Sequence[torch.Tensor]) -> torch.Tensor:
    """Stack clips ``(..., C, T, H, W)`` into ``(B, ..., C, T, H, W)``.

    Float clips stack as ``default_collate`` does (contiguous). uint8 clips (the uint8 handover:
    channels-last views) are stacked in their memory layout ``(..., T, H, W, C)`` and returned as
    a channels-last view again, so no transposing copy is made on the CPU (in a DataLoader worker
    the stack lands in shared memory, and the view's strides travel with it). A batch of one clip
    is that clip with a batch dimension, not a copy (10 x 3 test views at 256: 189 MB uint8, 754 MB
    float; in a worker the clip's memory moves to shared memory once, as a stack would).
    """
    if len(clips) == 1:
        return clips[0].unsqueeze(0)
    if clips[0].dtype != torch.uint8:
        return default_collate(list(clips))
    return default_collate([c.movedim(-4, -1) for c in clips]).movedim(-1, -4)


def collate_skip_bad(batch: Sequence[dict | BadSample]) -> dict:
    """Collate dataset items, dropping `BadSample`s.

    Returns:
        ``default_collate`` of the good items (``clip`` (B, ...), ``label`` int64 (B,), ``index``
        int64 (B,), ``video_id`` list, and ``scene``/``masked_clip`` when present; clips stacked
        by `stack_clips`; ``clip_norm``, the `ClipNormalizer` of uint8 clips, passed through once)
        plus ``"bad"``: the list of `BadSample`s. When every item is bad: ``clip`` is None,
        ``label`` and ``index`` are empty int64 tensors, ``video_id`` is empty; the training loop
        skips such a batch (test ``batch["clip"] is None``).
    """
    good = [b for b in batch if not isinstance(b, BadSample)]
    bad = [b for b in batch if isinstance(b, BadSample)]
    if good:
        special = [k for k in (*CLIP_KEYS, "clip_norm") if k in good[0]]
        out = default_collate([{k: v for k, v in b.items() if k not in special} for b in good])
        for key in special:
            out[key] = good[0][key] if key == "clip_norm" else stack_clips([b[key] for b in good])
    else:
        empty = torch.empty(0, dtype=torch.int64)
        out = {"clip": None, "label": empty, "index": empty.clone(), "video_id": []}
    out["bad"] = bad
    return out


class BadVideoReport:
    """Counts the distinct bad videos seen (by dataset index) and enforces a bad fraction.

    Args:
        dataset_size: number of videos in the dataset.
        max_bad_fraction: the largest tolerated fraction of bad videos.
        name: the dataset's name, used in messages.
    """

    def __init__(self, dataset_size: int, max_bad_fraction: float = 0.05, name: str = "dataset") -> None:
        if dataset_size < 1:
            raise ValueError(f"dataset_size must be >= 1, got {dataset_size}")
        if not 0.0 <= max_bad_fraction <= 1.0:
            raise ValueError(f"max_bad_fraction must lie in [0, 1], got {max_bad_fraction}")
        self.dataset_size = dataset_size
        self.max_bad_fraction = max_bad_fraction
        self.name = name
        self._bad: dict[int, BadSample] = {}

    @property
    def bad(self) -> list[BadSample]:
        """The distinct bad samples seen, in order of first sight."""
        return list(self._bad.values())

    @property
    def count(self) -> int:
        return len(self._bad)

    @property
    def fraction(self) -> float:
        return self.count / self.dataset_size

    def reset(self) -> None:
        self._bad.clear()

    def update(self, bad: dict | BadSample | Iterable[BadSample]) -> None:
        """Record bad samples (a collated batch, one `BadSample`, or several), then `check`.

        Raises:
            TooManyBadVideosError: more than ``max_bad_fraction`` of the dataset is now bad.
        """
        if isinstance(bad, dict):
            bad = bad.get("bad", [])
        elif isinstance(bad, BadSample):
            bad = [bad]
        for sample in bad:
            self._bad.setdefault(sample.index, sample)
        self.check()

    def check(self) -> None:
        """Raise `TooManyBadVideosError` if more than ``max_bad_fraction`` of the videos are bad."""
        if self.fraction > self.max_bad_fraction:
            raise TooManyBadVideosError(self.summary(limit=5))

    def summary(self, limit: int = 5) -> str:
        """How many videos are bad, which fraction, and the first `limit` files with reasons."""
        head = (
            f"{self.count} of {self.dataset_size} videos in {self.name} could not be decoded "
            f"({self.fraction:.1%}; max_bad_fraction={self.max_bad_fraction:.1%})"
        )
        if not self._bad:
            return head
        shown = "\n".join(f"  {b.path}: {b.reason}" for b in self.bad[:limit])
        more = f"\n  ... and {self.count - limit} more" if self.count > limit else ""
        return f"{head}; first bad files:\n{shown}{more}"
