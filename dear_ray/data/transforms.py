"""Spatial transforms on uint8 clips, with MMAction2 0.x / mmcv 1.x semantics, and the presets.

A `VideoTransform` takes a uint8 numpy clip ``(N, H, W, 3)`` RGB (N = num_clips * T frames, clips
concatenated as the samplers return them) and returns a float32 tensor normalised with the given
per-channel RGB `mean` / `std` (0-255 scale; `data.mean` / `data.std`, SPEC sections 1.7 and 3):

- ``(C, T, H, W)`` for one view when the transform is single-view (the training presets);
- ``(V, C, T, H, W)`` with ``V = num_clips * num_crops``, clip-major (view ``v = clip * num_crops +
  crop``) when ``num_clips > 1`` or the transform is multi-view (every test preset, even V = 1).

Every random choice comes from the numpy Generator passed in, and one choice (crop box, flip) is
applied to all frames of all clips of a call. `VideoTransform.apply_many` transforms several clips
of the same size with the SAME random choices (SDN's clip and masked clip).

Internally frames stay uint8 numpy ``(N, H, W, 3)``: crops and flips are views, resizes are
``cv2.resize(INTER_LINEAR)`` frame by frame, as ``mmcv.imresize`` (mmcv 1.x
mmcv/image/geometric.py, which MMAction2 0.x's ``Resize`` calls): no antialiasing, and the
keep-ratio size rounded as mmcv's ``rescale_size`` (``int(x + 0.5)``; 400x240 at short side 256
-> 427x256). The clip is converted to float and normalised once, at the end. ``resize="antialias"``
selects torchvision's antialiased bilinear instead (close to PIL's bilinear, which SDN's
libs/spatial_transforms.py uses).
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np
import torch
from torchvision.transforms.v2 import functional as F

from dear_ray.data.color import ColorJitter

MEAN_RGB = (123.675, 116.28, 103.53)
STD_RGB = (58.395, 57.12, 57.375)
TRAIN_KINDS = ("multiscale", "random_resized", "center")
TSM_SCALES = (1.0, 0.875, 0.75, 0.66)
RESIZE_KINDS = ("cv2", "antialias")


def _need_rng(rng: np.random.Generator | None, op: object) -> np.random.Generator:
    if rng is None:
        raise ValueError(f"{op!r} is random: pass an explicit numpy Generator as rng")
    return rng


def _check_fits(frames: np.ndarray, h: int, w: int, op: object) -> None:
    H, W = frames.shape[1:3]
    if h > H or w > W:
        raise ValueError(f"{op!r}: crop {h}x{w} (HxW) does not fit in frames of {H}x{W}")


def rescale_size(width: int, height: int, short_side: int) -> tuple[int, int]:
    """mmcv 1.x ``rescale_size((w, h), (inf, short_side))``, i.e. MMAction2's
    ``Resize(scale=(-1, short_side), keep_ratio=True)``: factor ``short_side / min(w, h)``, each
    side ``int(side * factor + 0.5)``. Returns ``(new_width, new_height)``."""
    factor = float(short_side) / min(width, height)
    return int(width * factor + 0.5), int(height * factor + 0.5)


def resize_frames(frames: np.ndarray, width: int, height: int, kind: str = "cv2") -> np.ndarray:
    """Resize uint8 frames ``(N, H, W, 3)`` (views allowed) to ``(N, height, width, 3)``.

    ``cv2``: ``cv2.resize(INTER_LINEAR)`` per frame, exactly ``mmcv.imresize(img, (width, height))``
    with its default bilinear interpolation (no antialiasing). ``antialias``: torchvision's
    antialiased bilinear (rounded to uint8).
    """
    if kind == "antialias":
        x = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2)
        return F.resize(x, [height, width], antialias=True).permute(0, 2, 3, 1).numpy()
    out = np.empty((frames.shape[0], height, width, frames.shape[3]), dtype=np.uint8)
    for i in range(frames.shape[0]):
        cv2.resize(frames[i], (width, height), dst=out[i], interpolation=cv2.INTER_LINEAR)
    return out


def _check_resize(kind: str) -> str:
    if kind not in RESIZE_KINDS:
        raise ValueError(f"unknown resize {kind!r}; known: {', '.join(RESIZE_KINDS)}")
    return kind


class ResizeShortSide:
    """Resize so the short side equals `size`, keeping the aspect ratio: MMAction2 0.x
    ``Resize(scale=(-1, size))`` (long side rounded as `rescale_size`). Frames whose short side
    already equals `size` are returned as they are (mmcv's resize to the same size is the
    identity)."""

    def __init__(self, size: int, resize: str = "cv2") -> None:
        self.size = size
        self.resize = _check_resize(resize)

    def __call__(self, frames: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
        H, W = frames.shape[1:3]
        if min(H, W) == self.size:
            return frames
        return resize_frames(frames, *rescale_size(W, H, self.size), self.resize)

    def __repr__(self) -> str:
        return f"ResizeShortSide({self.size}, resize={self.resize!r})"


class _ResizedBoxCrop:
    """A random box (`crop_box(height, width, rng) -> (top, left, h, w)`) resized to
    `output_size` x `output_size` (MMAction2's crop followed by ``Resize((s, s),
    keep_ratio=False)``)."""

    output_size: int
    resize: str = "cv2"

    def crop_box(self, height: int, width: int, rng: np.random.Generator
                 ) -> tuple[int, int, int, int]:
        raise NotImplementedError

    def __call__(self, frames: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
        top, left, h, w = self.crop_box(*frames.shape[1:3], _need_rng(rng, self))
        out = self.output_size
        return resize_frames(frames[:, top : top + h, left : left + w], out, out, self.resize)


class MultiScaleCrop(_ResizedBoxCrop):
    """MMAction2's ``MultiScaleCrop`` followed by a resize to `output_size` (TSN/TSM training).

    Crop sides are ``int(min(H, W) * s)`` for s in `scales`; (w, h) pairs whose scale levels differ
    by at most `max_wh_scale_gap` are candidates, one drawn uniformly; a side within 3 px of the
    output size snaps to it. The offset is uniform (`random_crop`) or one of 5 (or 13) fixed
    positions on a grid of ``(W - w) // 4`` by ``(H - h) // 4`` steps.

    Args:
        output_size: side of the square output.
        scales: crop scales relative to the short side.
        max_wh_scale_gap: largest allowed difference between the w and h scale levels.
        random_crop: uniform offsets instead of fixed positions.
        num_fixed_crops: 5 (corners + centre) or 13 (+ edge centres and quarter points).
    """

    def __init__(
        self,
        output_size: int,
        scales: Sequence[float] = TSM_SCALES,
        max_wh_scale_gap: int = 1,
        random_crop: bool = False,
        num_fixed_crops: int = 5,
    ) -> None:
        if num_fixed_crops not in (5, 13):
            raise ValueError(f"num_fixed_crops must be 5 or 13, got {num_fixed_crops}")
        self.output_size = output_size
        self.scales = tuple(scales)
        self.max_wh_scale_gap = max_wh_scale_gap
        self.random_crop = random_crop
        self.num_fixed_crops = num_fixed_crops

    def crop_box(self, height: int, width: int, rng: np.random.Generator) -> tuple[int, int, int, int]:
        """Draw ``(top, left, h, w)`` for a frame of `height` x `width`."""
        sides = [int(min(height, width) * s) for s in self.scales]
        candidates = [
            (w, h)
            for i, h in enumerate(sides)
            for j, w in enumerate(sides)
            if abs(i - j) <= self.max_wh_scale_gap
        ]
        w, h = candidates[int(rng.integers(len(candidates)))]
        w = self.output_size if abs(w - self.output_size) < 3 else w
        h = self.output_size if abs(h - self.output_size) < 3 else h
        w, h = min(w, width), min(h, height)
        if self.random_crop:
            return int(rng.integers(height - h + 1)), int(rng.integers(width - w + 1)), h, w
        ws, hs = (width - w) // 4, (height - h) // 4
        grid = [(0, 0), (4, 0), (0, 4), (4, 4), (2, 2)]  # (x, y) steps: corners, centre
        if self.num_fixed_crops == 13:
            grid += [(0, 2), (4, 2), (2, 4), (2, 0), (1, 1), (3, 1), (1, 3), (3, 3)]
        gx, gy = grid[int(rng.integers(len(grid)))]
        return gy * hs, gx * ws, h, w

    def __repr__(self) -> str:
        return (
            f"MultiScaleCrop({self.output_size}, scales={self.scales}, "
            f"max_wh_scale_gap={self.max_wh_scale_gap}, random_crop={self.random_crop}, "
            f"num_fixed_crops={self.num_fixed_crops})"
        )


class RandomResizedCrop(_ResizedBoxCrop):
    """MMAction2's ``RandomResizedCrop`` followed by a resize to `output_size` (SlowFast/TPN training).

    Up to 10 attempts of (area fraction ~ U(area_range), log aspect ratio ~ U(log range)); the first
    box that fits is placed uniformly; otherwise the centred square of the short side.
    """

    def __init__(
        self,
        output_size: int,
        area_range: tuple[float, float] = (0.08, 1.0),
        aspect_ratio_range: tuple[float, float] = (3 / 4, 4 / 3),
        max_attempts: int = 10,
    ) -> None:
        if not 0 < area_range[0] <= area_range[1] <= 1:
            raise ValueError(f"area_range must satisfy 0 < lo <= hi <= 1, got {area_range}")
        if not 0 < aspect_ratio_range[0] <= aspect_ratio_range[1]:
            raise ValueError(f"aspect_ratio_range must satisfy 0 < lo <= hi, got {aspect_ratio_range}")
        self.output_size = output_size
        self.area_range = area_range
        self.aspect_ratio_range = aspect_ratio_range
        self.max_attempts = max_attempts

    def crop_box(self, height: int, width: int, rng: np.random.Generator) -> tuple[int, int, int, int]:
        """Draw ``(top, left, h, w)`` for a frame of `height` x `width`."""
        lo, hi = np.log(self.aspect_ratio_range[0]), np.log(self.aspect_ratio_range[1])
        ratios = np.exp(rng.uniform(lo, hi, size=self.max_attempts))
        areas = rng.uniform(*self.area_range, size=self.max_attempts) * height * width
        ws = np.round(np.sqrt(areas * ratios)).astype(int)
        hs = np.round(np.sqrt(areas / ratios)).astype(int)
        for w, h in zip(ws, hs):
            if 0 < h <= height and 0 < w <= width:
                top = int(rng.integers(height - h + 1))
                left = int(rng.integers(width - w + 1))
                return top, left, int(h), int(w)
        side = min(height, width)
        return (height - side) // 2, (width - side) // 2, side, side

    def __repr__(self) -> str:
        return (
            f"RandomResizedCrop({self.output_size}, area_range={self.area_range}, "
            f"aspect_ratio_range={self.aspect_ratio_range})"
        )


class Flip:
    """Horizontal flip with probability `p` (a view: no copy)."""

    def __init__(self, p: float = 0.5) -> None:
        self.p = p

    def __call__(self, frames: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
        if _need_rng(rng, self).random() < self.p:
            return frames[:, :, ::-1]
        return frames

    def __repr__(self) -> str:
        return f"Flip(p={self.p})"


class CenterCrop:
    """Centre square crop of side `size` (the offset rounds down: ``(H - size) // 2``), a view."""

    def __init__(self, size: int) -> None:
        self.size = size

    def __call__(self, frames: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
        _check_fits(frames, self.size, self.size, self)
        H, W = frames.shape[1:3]
        top, left = (H - self.size) // 2, (W - self.size) // 2
        return frames[:, top : top + self.size, left : left + self.size]

    def __repr__(self) -> str:
        return f"CenterCrop({self.size})"


class ThreeCrop:
    """Three square crops along the long side, centred on the short side (views).

    MMAction2 0.x ``ThreeCrop`` (the DEAR I3D/SlowFast/TPN test views): with ``step = (W - s) // 2``
    the crops start at 0, step and ``2 * step`` -- so the last crop ends one pixel short of the
    edge when ``W - s`` is odd (341 wide, s = 256: left 0, 42, 84). Returned in the order start,
    centre, end (MMAction2 lists start, end, centre; views are averaged, so the order does not
    change a score).
    """

    def __init__(self, size: int) -> None:
        self.size = size

    def __call__(self, frames: np.ndarray) -> list[np.ndarray]:
        _check_fits(frames, self.size, self.size, self)
        H, W = frames.shape[1:3]
        s = self.size
        if W >= H:
            top, step = (H - s) // 2, (W - s) // 2
            boxes = [(top, 0), (top, step), (top, 2 * step)]
        else:
            left, step = (W - s) // 2, (H - s) // 2
            boxes = [(0, left), (step, left), (2 * step, left)]
        return [frames[:, t : t + s, l : l + s] for t, l in boxes]

    def __repr__(self) -> str:
        return f"ThreeCrop({self.size})"


class TenCrop:
    """MMAction2 0.x ``TenCrop``: 4 corners + centre on a grid of ``(W - s) // 4`` by
    ``(H - s) // 4`` steps (corners at 4 steps, centre at 2), then the same 5 flipped (views)."""

    def __init__(self, size: int) -> None:
        self.size = size

    def __call__(self, frames: np.ndarray) -> list[np.ndarray]:
        _check_fits(frames, self.size, self.size, self)
        H, W = frames.shape[1:3]
        s = self.size
        ws, hs = (W - s) // 4, (H - s) // 4
        offsets = [(0, 0), (0, 4 * ws), (4 * hs, 0), (4 * hs, 4 * ws), (2 * hs, 2 * ws)]
        crops = [frames[:, t : t + s, l : l + s] for t, l in offsets]
        return crops + [c[:, :, ::-1] for c in crops]

    def __repr__(self) -> str:
        return f"TenCrop({self.size})"


class VideoTransform:
    """A chain of single-view ops, an optional multi-crop op, and normalisation.

    Args:
        ops: callables ``(frames (N, H, W, 3) uint8 numpy, rng) -> frames``, applied in order.
        multi_crop: optional ``frames -> list of crops`` applied after `ops` (ThreeCrop, TenCrop).
        multi_view: always return ``(V, C, T, H, W)``, even for V = 1.
        color: optional `ColorJitter`, applied to the float views (0-255) before normalisation,
            one draw a call.
        mean: per-channel RGB mean (0-255 scale).
        std: per-channel RGB std.
    """

    def __init__(
        self,
        ops: Sequence,
        *,
        multi_crop=None,
        multi_view: bool = False,
        color: ColorJitter | None = None,
        mean: Sequence[float] = MEAN_RGB,
        std: Sequence[float] = STD_RGB,
    ) -> None:
        self.ops = list(ops)
        self.multi_crop = multi_crop
        self.multi_view = multi_view
        self.color = color
        self.mean = list(mean)
        self.std = list(std)

    def __call__(
        self, clip: np.ndarray, rng: np.random.Generator | None = None, *, num_clips: int = 1
    ) -> torch.Tensor:
        """Transform one uint8 clip (num_clips * T, H, W, 3); see the module docstring for shapes."""
        return self.apply_many([clip], rng, num_clips=num_clips)[0]

    def apply_many(
        self,
        clips: Sequence[np.ndarray],
        rng: np.random.Generator | None = None,
        *,
        num_clips: int = 1,
    ) -> list[torch.Tensor]:
        """Transform several same-size uint8 clips with the same random crop/flip."""
        arrays = [np.asarray(c) for c in clips]
        for a in arrays:
            if a.dtype != np.uint8 or a.ndim != 4 or a.shape[-1] != 3:
                raise ValueError(f"expected a uint8 clip (N, H, W, 3), got {a.dtype} {a.shape}")
            if a.shape != arrays[0].shape:
                raise ValueError(f"clips differ in shape: {a.shape} vs {arrays[0].shape}")
            if a.shape[0] % num_clips:
                raise ValueError(f"{a.shape[0]} frames do not split into {num_clips} clips")
        n = arrays[0].shape[0]
        frames = np.concatenate(arrays) if len(arrays) > 1 else arrays[0]
        for op in self.ops:
            frames = op(frames, rng)
        crops = self.multi_crop(frames) if self.multi_crop is not None else [frames]
        t = n // num_clips
        h, w = crops[0].shape[1:3]
        mean = torch.tensor(self.mean).view(1, 1, 3, 1, 1, 1)
        inv_std = 1.0 / torch.tensor(self.std).view(1, 1, 3, 1, 1, 1)
        jitter = self.color.draw(_need_rng(rng, self.color), t) if self.color is not None else None
        out = []
        for j in range(len(arrays)):
            # (num_clips, num_crops, 3, T, h, w), clip-major; one float copy, normalised in place
            views = torch.empty((num_clips, len(crops), 3, t, h, w), dtype=torch.float32)
            for k, c in enumerate(crops):
                # transpose to (N, 3, h, w) in uint8 first (crop/flip views become one small
                # contiguous copy); copying to float from a channels-last source is ~3x slower
                src = np.ascontiguousarray(c[j * n : (j + 1) * n].transpose(0, 3, 1, 2))
                src = torch.from_numpy(src).view(num_clips, t, 3, h, w)
                views[:, k].copy_(src.permute(0, 2, 1, 3, 4))
            if jitter is not None:
                views = self.color.apply(views.view(-1, 3, t, h, w), jitter).view(views.shape)
            views.sub_(mean).mul_(inv_std)
            views = views.view(-1, 3, t, h, w)
            out.append(views[0] if not self.multi_view and views.shape[0] == 1 else views)
        return out

    def __repr__(self) -> str:
        parts = [repr(o) for o in self.ops] + ([repr(self.multi_crop)] if self.multi_crop else [])
        parts += [repr(self.color)] if self.color is not None else []
        return (f"VideoTransform([{', '.join(parts)}], multi_view={self.multi_view}, "
                f"mean={self.mean}, std={self.std})")


def _check_sizes(crop_size: int, scale_short: int) -> None:
    if crop_size < 1 or scale_short < crop_size:
        raise ValueError(
            f"need 1 <= crop_size <= scale_short, got crop_size={crop_size}, scale_short={scale_short}"
        )


def build_train_transform(
    crop_size: int = 224,
    scale_short: int = 256,
    kind: str = "multiscale",
    flip: bool = True,
    *,
    scales: Sequence[float] = TSM_SCALES,
    max_wh_scale_gap: int = 1,
    num_fixed_crops: int = 13,
    area_range: tuple[float, float] = (0.08, 1.0),
    color_jitter: bool = False,
    mean: Sequence[float] = MEAN_RGB,
    std: Sequence[float] = STD_RGB,
    resize: str = "cv2",
) -> VideoTransform:
    """Training preset: resize short side, random crop to `crop_size`, optional flip, normalise.

    Args:
        crop_size: output side.
        scale_short: short side after the first resize.
        kind: ``"multiscale"`` (`MultiScaleCrop` at fixed positions: TSN/TSM, DEAR's I3D, SDN),
            ``"random_resized"`` (SlowFast/TPN: `RandomResizedCrop`), ``"center"`` (no random
            crop).
        flip: horizontal flip with probability 0.5.
        scales: MultiScaleCrop scales (TSM uses (1, .875, .75, .66)).
        max_wh_scale_gap: MultiScaleCrop's largest gap between width and height scale levels.
        num_fixed_crops: MultiScaleCrop fixed positions, 5 or 13 (MMAction2's TSM configs: 13).
        area_range: RandomResizedCrop area fraction range.
        color_jitter: MMAction2's `ColorJitter(color_space_aug=True)` after the flip (TPN).
        mean: per-channel RGB mean, 0-255 (`data.mean`).
        std: per-channel RGB std, 0-255 (`data.std`; 1 = no division, as SDN).
        resize: ``"cv2"`` (mmcv.imresize, released MMAction2) or ``"antialias"``.

    Returns:
        A single-view `VideoTransform`: ``(C, T, crop, crop)`` for one clip.
    """
    _check_sizes(crop_size, scale_short)
    _check_resize(resize)
    if kind == "multiscale":
        crop = MultiScaleCrop(crop_size, scales, max_wh_scale_gap, False, num_fixed_crops)
    elif kind == "random_resized":
        crop = RandomResizedCrop(crop_size, area_range)
    elif kind == "center":
        crop = CenterCrop(crop_size)
    else:
        raise ValueError(f"unknown train transform kind {kind!r}; known: {', '.join(TRAIN_KINDS)}")
    if isinstance(crop, _ResizedBoxCrop):
        crop.resize = resize
    ops = [ResizeShortSide(scale_short, resize), crop] + ([Flip(0.5)] if flip else [])
    return VideoTransform(ops, color=ColorJitter() if color_jitter else None, mean=mean, std=std)


def build_test_transform(
    crop_size: int = 224,
    scale_short: int = 256,
    crops: int = 1,
    *,
    mean: Sequence[float] = MEAN_RGB,
    std: Sequence[float] = STD_RGB,
    resize: str = "cv2",
) -> VideoTransform:
    """Test preset: resize short side, then 1 centre crop, 3 crops or 10 crops; normalise with
    `mean` / `std` (RGB, 0-255); `resize` as in `build_train_transform`.

    Returns:
        A multi-view `VideoTransform`: ``(num_clips * crops, C, T, crop, crop)``.
    """
    _check_sizes(crop_size, scale_short)
    multi = {1: None, 3: ThreeCrop(crop_size), 10: TenCrop(crop_size)}
    if crops not in multi:
        raise ValueError(f"crops must be 1, 3 or 10, got {crops!r}")
    ops: list = [ResizeShortSide(scale_short, resize)]
    if crops == 1:
        ops.append(CenterCrop(crop_size))
    return VideoTransform(ops, multi_crop=multi[crops], multi_view=True, mean=mean, std=std)
