"""The clip pipeline (`VideoTransform`), its normalisation (`ClipNormalizer`) and the presets.

A `VideoTransform` takes a uint8 numpy clip ``(N, H, W, 3)`` RGB (N = num_clips * T frames, clips
concatenated as the samplers return them), runs the uint8 ops of `dear_ray.data.transforms`
(resize, crop, flip) and returns a tensor

- ``(C, T, H, W)`` for one view when the transform is single-view (the training presets);
- ``(V, C, T, H, W)`` with ``V = num_clips * num_crops``, clip-major (view ``v = clip * num_crops +
  crop``) when ``num_clips > 1`` or the transform is multi-view (every test preset, even V = 1).

Two handovers (`handover`):

- ``"float"`` (the default): float32, normalised with the per-channel RGB `mean` / `std` (0-255
  scale; `data.mean` / `data.std`), contiguous. The pixels become float once, at the end: a
  per-channel 256-entry table (`ClipNormalizer.lut`) maps uint8 to normalised float32, each
  distinct frame once for all the views that show it (`dear_ray.data.views`; with `color`, the
  jitter's float pixels are normalised in place).
- ``"uint8"``: the uint8 pixels, not normalised, as a channels-last view (memory
  ``(V, T, H, W, C)``: no transposing copy on the CPU; 4x fewer bytes through the DataLoader and to the device);
  `collate_skip_bad` keeps that layout and the training loop normalises on the device with the
  transform's `ClipNormalizer`: the same float32 operations, so the same numbers as the float
  handover (tests/data/test_presets.py).

`VideoTransform.apply_many` transforms several clips of the same size with the SAME random choices
(SDN's clip and masked clip). Given a frame map (``frame_map``: the clips' frames as indices into
distinct frames, as `dear_ray.data.decode.read_clip` returns them), the ops run once per distinct
frame and the views are copied out afterwards: the same output as transforming the expanded clip.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from dear_ray.data.color import ColorJitter
from dear_ray.data.transforms import (
    MEAN_RGB,
    STD_RGB,
    TSM_SCALES,
    CenterCrop,
    Flip,
    MultiScaleCrop,
    RandomResizedCrop,
    ResizeShortSide,
    TenCrop,
    ThreeCrop,
    _check_resize,
    _need_rng,
    _ResizedBoxCrop,
    resize_short_side_and_crop,
)
from dear_ray.data.views import float_views, uint8_planes, uint8_views

TRAIN_KINDS = ("multiscale", "random_resized", "center")
HANDOVERS = ("float", "uint8")


class ClipNormalizer:
    """``(x - mean) / std`` per RGB channel, as float32: the one normalisation of every clip.

    Computed as ``(x - float32(mean)) * float32(1 / float64(std))``, two exactly rounded float32
    operations, so the same numbers on the CPU (the float handover, inside `VideoTransform`, looks
    them up in `lut`: the same operations on the 256 uint8 values) and on the training device
    (the uint8 handover: the training loop calls this on the batch after moving it). mmcv 1.x's ``imnormalize_`` (MMAction2 0.x's ``Normalize``) subtracts the same
    float32 mean and multiplies by ``1 / float64(std)`` in float64 before rounding: within one
    float32 ulp of this (equal for ~60% of the values; a float64 pass would cost more than the
    rest of the normalisation).

    Args:
        mean: per-channel RGB mean, 0-255 scale (`data.mean`).
        std: per-channel RGB std, 0-255 scale (`data.std`).
    """

    def __init__(self, mean: Sequence[float] = MEAN_RGB, std: Sequence[float] = STD_RGB) -> None:
        self.mean = tuple(float(m) for m in mean)
        self.std = tuple(float(s) for s in std)
        self._cache: dict = {}

    def constants(self, ndim: int, device: torch.device | str = "cpu"
                  ) -> tuple[torch.Tensor, torch.Tensor]:
        """float32 ``(mean, 1 / std)`` shaped to broadcast over a tensor of `ndim` dims whose
        channel dim is ``-4`` (``(..., C, T, H, W)``)."""
        key = (ndim, str(device))
        if key not in self._cache:
            shape = [1] * ndim
            shape[-4] = 3
            mean = torch.tensor(self.mean, dtype=torch.float32)
            inv_std = torch.tensor([1.0 / s for s in self.std], dtype=torch.float32)
            self._cache[key] = (mean.view(shape).to(device), inv_std.view(shape).to(device))
        return self._cache[key]

    def lut(self) -> np.ndarray:
        """float32 ``(3, 256)``: entry ``[c, v]`` is pixel value ``v`` of channel ``c`` normalised
        with the same two float32 operations as `normalize_` (so a table look-up gives the same
        numbers as the arithmetic)."""
        if "lut" not in self._cache:
            values = np.arange(256, dtype=np.float32)[None, :]
            mean = np.asarray(self.mean, dtype=np.float32)[:, None]
            inv_std = np.asarray([1.0 / s for s in self.std], dtype=np.float32)[:, None]
            self._cache["lut"] = np.ascontiguousarray((values - mean) * inv_std, dtype=np.float32)
        return self._cache["lut"]

    def normalize_(self, clips: torch.Tensor) -> torch.Tensor:
        """Normalise float32 clips ``(..., C, T, H, W)`` (0-255 values) in place."""
        mean, inv_std = self.constants(clips.dim(), clips.device)
        return clips.sub_(mean).mul_(inv_std)

    def __call__(self, clips: torch.Tensor) -> torch.Tensor:
        """uint8 (or float) clips ``(..., C, T, H, W)`` -> normalised float32, same shape and
        strides (a channels-last batch stays channels-last)."""
        if clips.shape[-4] != 3:
            raise ValueError(f"ClipNormalizer expects clips (..., 3, T, H, W), got "
                             f"{tuple(clips.shape)}")
        return self.normalize_(clips.to(torch.float32, copy=True))

    def __getstate__(self) -> dict:  # the per-device cache stays behind when pickled
        return {"mean": self.mean, "std": self.std, "_cache": {}}

    def __repr__(self) -> str:
        return f"ClipNormalizer(mean={list(self.mean)}, std={list(self.std)})"


class VideoTransform:
    """A chain of single-view ops, an optional multi-crop op, and normalisation.

    Args:
        ops: callables ``(frames (N, H, W, 3) uint8 numpy, rng) -> frames``, applied in order.
        multi_crop: optional ``frames -> list of crops`` applied after `ops` (ThreeCrop, TenCrop).
        multi_view: always return ``(V, C, T, H, W)``, even for V = 1.
        color: optional `ColorJitter`, applied to the float views (0-255) before normalisation,
            one draw a call (float handover only).
        mean: per-channel RGB mean (0-255 scale).
        std: per-channel RGB std.
        handover: ``"float"``: normalised float32 clips, contiguous; ``"uint8"``: the uint8 pixels
            ``(C, T, H, W)`` (or ``(V, C, T, H, W)``) as a channels-last view (memory ``(V, T, H,
            W, C)``, no transposing copy), left for `normalizer` to normalise on the device.
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
        handover: str = "float",
    ) -> None:
        if handover not in HANDOVERS:
            raise ValueError(f"unknown handover {handover!r}; known: {', '.join(HANDOVERS)}")
        if handover == "uint8" and color is not None:
            raise ValueError("handover='uint8' cannot carry ColorJitter (data.color_jitter): the "
                             "jitter works on float clips before normalisation; use the float "
                             "handover")
        self.ops = list(ops)
        self.multi_crop = multi_crop
        self.multi_view = multi_view
        self.color = color
        self.handover = handover
        self.normalizer = ClipNormalizer(mean, std)

    @property
    def mean(self) -> list[float]:
        return list(self.normalizer.mean)

    @property
    def std(self) -> list[float]:
        return list(self.normalizer.std)

    def __call__(
        self, clip: np.ndarray, rng: np.random.Generator | None = None, *, num_clips: int = 1,
        frame_map: np.ndarray | None = None,
    ) -> torch.Tensor:
        """Transform one uint8 clip; see the module docstring for shapes and `apply_many` for
        `frame_map`."""
        return self.apply_many([clip], rng, num_clips=num_clips, frame_map=frame_map)[0]

    def apply_many(
        self,
        clips: Sequence[np.ndarray],
        rng: np.random.Generator | None = None,
        *,
        num_clips: int = 1,
        frame_map: np.ndarray | None = None,
    ) -> list[torch.Tensor]:
        """Transform several same-size uint8 clips with the same random crop/flip.

        Args:
            clips: uint8 ``(N, H, W, 3)`` each, N = num_clips * T frames; with `frame_map`, the
                distinct frames ``(U, H, W, 3)`` the clips are made of.
            rng: the generator of the random ops.
            num_clips: clips the N frames split into.
            frame_map: int ``(N,)``: frame n of the clips is ``clips[j][frame_map[n]]`` (a
                `SampledClip`'s); None: the frames in order. The output equals transforming
                ``clip[frame_map]``, but each distinct frame is resized, cropped and converted once.
        """
        arrays = [np.asarray(c) for c in clips]
        for a in arrays:
            if a.dtype != np.uint8 or a.ndim != 4 or a.shape[-1] != 3:
                raise ValueError(f"expected a uint8 clip (N, H, W, 3), got {a.dtype} {a.shape}")
            if a.shape != arrays[0].shape:
                raise ValueError(f"clips differ in shape: {a.shape} vs {arrays[0].shape}")
        u = arrays[0].shape[0]
        n = u if frame_map is None else len(frame_map)
        if frame_map is not None and len(frame_map) and not 0 <= min(frame_map) <= max(frame_map) < u:
            raise ValueError(f"frame_map indexes frames outside the clip's {u}")
        if n % num_clips:
            raise ValueError(f"{n} frames do not split into {num_clips} clips")
        frames = np.concatenate(arrays) if len(arrays) > 1 else arrays[0]
        frames = self._run_ops(frames, rng)
        if self.multi_crop is not None:
            s = self.multi_crop.size
            size, boxes = (s, s), self.multi_crop.boxes(*frames.shape[1:3])
        else:
            size, boxes = frames.shape[1:3], [(0, 0, False)]
        parts = [frames[j * u : (j + 1) * u] for j in range(len(arrays))]
        if self.handover == "uint8":
            fresh = not any(np.may_share_memory(frames, a) for a in arrays)
            views = [torch.from_numpy(uint8_views(p, frame_map, boxes, size, num_clips, fresh))
                     .flatten(0, 1).permute(0, 4, 1, 2, 3) for p in parts]
        elif self.color is not None:
            jitter = self.color.draw(_need_rng(rng, self.color), n // num_clips)
            views = []
            for p in parts:
                pixels = uint8_views(p, frame_map, boxes, size, num_clips, False)
                planes = torch.from_numpy(uint8_planes(pixels.reshape(-1, *pixels.shape[2:])))
                jittered = self.color.apply(planes.to(torch.float32), jitter).contiguous()
                views.append(self.normalizer.normalize_(jittered))
        else:
            lut = self.normalizer.lut()
            views = [torch.from_numpy(float_views(p, frame_map, boxes, size, num_clips, lut))
                     .flatten(0, 1) for p in parts]
        return [v[0] if not self.multi_view and v.shape[0] == 1 else v for v in views]

    def _run_ops(self, frames: np.ndarray, rng: np.random.Generator | None) -> np.ndarray:
        """Apply `ops` in order; a short-side resize followed by a resized box crop runs as
        `resize_short_side_and_crop` (the same pixels, fewer rows resized)."""
        ops, i = self.ops, 0
        while i < len(ops):
            if (i + 1 < len(ops) and isinstance(ops[i], ResizeShortSide)
                    and isinstance(ops[i + 1], _ResizedBoxCrop)):
                frames = resize_short_side_and_crop(frames, ops[i], ops[i + 1], rng)
                i += 2
            else:
                frames = ops[i](frames, rng)
                i += 1
        return frames

    def __repr__(self) -> str:
        parts = [repr(o) for o in self.ops] + ([repr(self.multi_crop)] if self.multi_crop else [])
        parts += [repr(self.color)] if self.color is not None else []
        return (f"VideoTransform([{', '.join(parts)}], multi_view={self.multi_view}, "
                f"mean={self.mean}, std={self.std}, handover={self.handover!r})")


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
    handover: str = "float",
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
        handover: ``"float"`` (normalised float32) or ``"uint8"`` (normalised on the device by
            the training loop; not with `color_jitter`); see the module docstring.

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
    return VideoTransform(ops, color=ColorJitter() if color_jitter else None, mean=mean, std=std,
                          handover=handover)


def build_test_transform(
    crop_size: int = 224,
    scale_short: int = 256,
    crops: int = 1,
    *,
    mean: Sequence[float] = MEAN_RGB,
    std: Sequence[float] = STD_RGB,
    resize: str = "cv2",
    handover: str = "float",
    rounding: str = "mmaction2",
) -> VideoTransform:
    """Test preset: resize short side, then 1 centre crop, 3 crops or 10 crops; normalise with
    `mean` / `std` (RGB, 0-255); `resize` and `handover` as in `build_train_transform`.
    `rounding`: how the resize rounds the long side and the centre crop its offset, ``mmaction2``
    (``int(x + 0.5)``, offset rounded down) or ``sdn`` (SDN's test: long side rounded down, offset
    rounded half to even; `ResizeShortSide`, `CenterCrop`).

    Returns:
        A multi-view `VideoTransform`: ``(num_clips * crops, C, T, crop, crop)``.
    """
    _check_sizes(crop_size, scale_short)
    multi = {1: None, 3: ThreeCrop(crop_size), 10: TenCrop(crop_size)}
    if crops not in multi:
        raise ValueError(f"crops must be 1, 3 or 10, got {crops!r}")
    ops: list = [ResizeShortSide(scale_short, resize, rounding)]
    if crops == 1:
        ops.append(CenterCrop(crop_size, rounding))
    return VideoTransform(ops, multi_crop=multi[crops], multi_view=True, mean=mean, std=std,
                          handover=handover)
