"""Spatial ops on uint8 clips, with MMAction2 0.x / mmcv 1.x semantics.

Each op takes uint8 numpy frames ``(N, H, W, 3)`` RGB (N = num_clips * T frames, clips
concatenated as the samplers return them) and returns frames of the same kind; multi-crop ops
return a list of them. The pipeline that chains them and normalises (`VideoTransform`,
`ClipNormalizer`) and the train/test presets live in `dear_ray.data.presets`, which imports this
module (never the reverse).

Every random choice comes from the numpy Generator passed in, and one choice (crop box, flip) is
applied to all frames of all clips of a call.

Frames stay uint8 numpy ``(N, H, W, 3)``: crops and flips are views, resizes are
``cv2.resize(INTER_LINEAR)`` frame by frame, as ``mmcv.imresize`` (mmcv 1.x
mmcv/image/geometric.py, which MMAction2 0.x's ``Resize`` calls): no antialiasing, and the
keep-ratio size rounded as mmcv's ``rescale_size`` (``int(x + 0.5)``; 400x240 at short side 256
-> 427x256). ``resize="antialias"`` selects torchvision's antialiased bilinear instead (close to
PIL's bilinear, which SDN's libs/spatial_transforms.py uses).
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np
import torch
from torchvision.transforms.v2 import functional as F

MEAN_RGB = (123.675, 116.28, 103.53)
STD_RGB = (58.395, 57.12, 57.375)
TSM_SCALES = (1.0, 0.875, 0.75, 0.66)
RESIZE_KINDS = ("cv2", "antialias")
ROUNDINGS = ("mmaction2", "sdn")  # test views: keep-ratio long side and centre-crop offset


def _need_rng(rng: np.random.Generator | None, op: object) -> np.random.Generator:
    if rng is None:
        raise ValueError(f"{op!r} is random: pass an explicit numpy Generator as rng")
    return rng


def _check_fits(frames: np.ndarray, h: int, w: int, op: object) -> None:
    H, W = frames.shape[1:3]
    if h > H or w > W:
        raise ValueError(f"{op!r}: crop {h}x{w} (HxW) does not fit in frames of {H}x{W}")


def rescale_size(width: int, height: int, short_side: int, rounding: str = "mmaction2"
                 ) -> tuple[int, int]:
    """The keep-ratio size with short side `short_side`, as ``(new_width, new_height)``.

    ``mmaction2``: mmcv 1.x ``rescale_size((w, h), (inf, short_side))``, i.e. MMAction2's
    ``Resize(scale=(-1, short_side), keep_ratio=True)``: factor ``short_side / min(w, h)``, each
    side ``int(side * factor + 0.5)`` (400x240 at 256 -> 427x256).
    ``sdn``: SDN's ``Scale(short_side)`` (vt-vl-lab/SDN libs/spatial_transforms.py): the long side
    ``int(short_side * long / short)``, rounded down (400x240 at 256 -> 426x256).
    """
    if _check_rounding(rounding) == "sdn":
        short, long = min(width, height), max(width, height)
        scaled = short_side * long // short  # exact: int(short_side * long / short)
        return (scaled, short_side) if width >= height else (short_side, scaled)
    factor = float(short_side) / min(width, height)
    return int(width * factor + 0.5), int(height * factor + 0.5)


def resize_frames(frames: np.ndarray, width: int, height: int, kind: str = "cv2") -> np.ndarray:
    """Resize uint8 frames ``(N, H, W, 3)`` (views allowed) to ``(N, height, width, 3)``.

    ``cv2``: ``cv2.resize(INTER_LINEAR)`` per frame, exactly ``mmcv.imresize(img, (width, height))``
    with its default bilinear interpolation (no antialiasing); frames that already have the size
    come back as they are (a view: ``cv2.resize`` to the same size copies the pixels unchanged).
    ``antialias``: torchvision's antialiased bilinear (rounded to uint8).

    One call per frame: frames stacked on the channel axis give the same pixels but take OpenCV's
    generic many-channel path (~7x slower here), and stacked vertically they save nothing.
    """
    if kind != "antialias" and frames.shape[1:3] == (height, width):
        return frames
    if kind == "antialias":
        x = np.ascontiguousarray(frames)
        if not x.flags.writeable:  # a cached clip (read-only): torch only views writeable memory
            x = x.copy()
        x = torch.from_numpy(x).permute(0, 3, 1, 2)
        return F.resize(x, [height, width], antialias=True).permute(0, 2, 3, 1).numpy()
    out = np.empty((frames.shape[0], height, width, frames.shape[3]), dtype=np.uint8)
    for i in range(frames.shape[0]):
        cv2.resize(frames[i], (width, height), dst=out[i], interpolation=cv2.INTER_LINEAR)
    return out


def resize_rows(frames: np.ndarray, width: int, height: int, top: int, bottom: int
                ) -> tuple[np.ndarray, int]:
    """Rows ``[top, bottom)`` of ``resize_frames(frames, width, height)`` (cv2), bit for bit,
    computing only a band of rows around them: ``(band, first)``, the band ``(N, rows, width, 3)``
    holding output rows ``first, first + 1, ...`` (``first <= top``, ``first + rows >= bottom``).

    Exact because ``cv2.resize(INTER_LINEAR)`` maps output row ``y`` to source position
    ``(y + 0.5) * H / height - 0.5`` (a multiple of 1/(2 height), so computed exactly), from the
    given scale factors: a source band starting at row ``y0 * H / height``, an integer, resized
    with the same factors (``fx = width / W``, ``fy = height / H``) gives the same rows. Bands
    start at multiples of ``height / gcd(H, height)`` output rows (16 for 240 -> 256), one spare
    row inside each end (cv2 clamps at a band's edges); when that saves little, the whole frame
    is resized.
    """
    n, src_h, src_w = frames.shape[:3]
    period = height // np.gcd(src_h, height)
    y0 = 0 if top <= 1 else (top - 1) // period * period
    y1 = height if bottom >= height - 1 else min(height, -(-(bottom + 1) // period) * period)
    if y1 - y0 > 0.9 * height:
        return resize_frames(frames, width, height), 0
    s0 = y0 * src_h // height  # exact: y0 is a multiple of the period
    s1 = min(src_h, int(((y1 - 0.5) * src_h / height - 0.5) // 1) + 3)
    rows = round((s1 - s0) * height / src_h)  # cv2's saturate_cast<int> (round half even)
    band = np.empty((n, rows, width, frames.shape[3]), dtype=np.uint8)
    fx, fy = width / src_w, height / src_h
    for i in range(n):
        cv2.resize(frames[i, s0:s1], (0, 0), dst=band[i], fx=fx, fy=fy,
                   interpolation=cv2.INTER_LINEAR)
    return band, y0


def _check_resize(kind: str) -> str:
    if kind not in RESIZE_KINDS:
        raise ValueError(f"unknown resize {kind!r}; known: {', '.join(RESIZE_KINDS)}")
    return kind


def _check_rounding(rounding: str) -> str:
    if rounding not in ROUNDINGS:
        raise ValueError(f"unknown rounding {rounding!r}; known: {', '.join(ROUNDINGS)}")
    return rounding


class ResizeShortSide:
    """Resize so the short side equals `size`, keeping the aspect ratio: MMAction2 0.x
    ``Resize(scale=(-1, size))`` (long side rounded as `rescale_size`, by `rounding`: MMAction2's
    ``int(x + 0.5)`` or SDN's floor). Frames whose short side already equals `size` are returned
    as they are (mmcv's resize to the same size is the identity, SDN's ``Scale`` returns them)."""

    def __init__(self, size: int, resize: str = "cv2", rounding: str = "mmaction2") -> None:
        self.size = size
        self.resize = _check_resize(resize)
        self.rounding = _check_rounding(rounding)

    def output_size(self, width: int, height: int) -> tuple[int, int]:
        """``(new_width, new_height)`` for frames of `width` x `height`."""
        if min(width, height) == self.size:
            return width, height
        return rescale_size(width, height, self.size, self.rounding)

    def __call__(self, frames: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
        H, W = frames.shape[1:3]
        if min(H, W) == self.size:
            return frames
        return resize_frames(frames, *self.output_size(W, H), self.resize)

    def __repr__(self) -> str:
        extra = f", rounding={self.rounding!r}" if self.rounding != "mmaction2" else ""
        return f"ResizeShortSide({self.size}, resize={self.resize!r}{extra})"


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


def resize_short_side_and_crop(frames: np.ndarray, resize: ResizeShortSide,
                               crop: _ResizedBoxCrop, rng: np.random.Generator | None
                               ) -> np.ndarray:
    """``crop(resize(frames), rng)`` bit for bit, the same draws from `rng`, but the short-side
    resize computes only the rows the crop box needs (`resize_rows`: ~30% fewer for
    `RandomResizedCrop` on 320x240 frames)."""
    H, W = frames.shape[1:3]
    if min(H, W) == resize.size or "antialias" in (resize.resize, crop.resize):
        return crop(resize(frames), rng)
    width, height = resize.output_size(W, H)
    top, left, h, w = crop.crop_box(height, width, _need_rng(rng, crop))
    band, first = resize_rows(frames, width, height, top, top + h)
    box = band[:, top - first : top - first + h, left : left + w]
    return resize_frames(box, crop.output_size, crop.output_size, crop.resize)


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
    """Centre square crop of side `size`, a view. The offset ``(H - size) / 2`` (and the same for
    W) rounds down (``rounding="mmaction2"``: MMAction2's ``CenterCrop``) or half to even
    (``"sdn"``: SDN's ``CenterCrop`` / ``CornerCrop('c')``, ``int(round((w - size) / 2.))`` under
    Python 3: 37 / 2 -> 18, 39 / 2 -> 20)."""

    def __init__(self, size: int, rounding: str = "mmaction2") -> None:
        self.size = size
        self.rounding = _check_rounding(rounding)

    def offset(self, extent: int) -> int:
        """The crop's start along a side of `extent` pixels."""
        if self.rounding == "sdn":
            return round((extent - self.size) / 2)  # Python's round: half to even
        return (extent - self.size) // 2

    def __call__(self, frames: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
        _check_fits(frames, self.size, self.size, self)
        H, W = frames.shape[1:3]
        top, left = self.offset(H), self.offset(W)
        return frames[:, top : top + self.size, left : left + self.size]

    def __repr__(self) -> str:
        extra = f", rounding={self.rounding!r}" if self.rounding != "mmaction2" else ""
        return f"CenterCrop({self.size}{extra})"


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

    def boxes(self, height: int, width: int) -> list[tuple[int, int, bool]]:
        """The crops of a `height` x `width` frame as ``(top, left, flipped)``, `size` square."""
        s = self.size
        if width >= height:
            top, step = (height - s) // 2, (width - s) // 2
            return [(top, 0, False), (top, step, False), (top, 2 * step, False)]
        left, step = (width - s) // 2, (height - s) // 2
        return [(0, left, False), (step, left, False), (2 * step, left, False)]

    def __call__(self, frames: np.ndarray) -> list[np.ndarray]:
        return _crops(self, frames)

    def __repr__(self) -> str:
        return f"ThreeCrop({self.size})"


class TenCrop:
    """MMAction2 0.x ``TenCrop``: 4 corners + centre on a grid of ``(W - s) // 4`` by
    ``(H - s) // 4`` steps (corners at 4 steps, centre at 2), then the same 5 flipped (views)."""

    def __init__(self, size: int) -> None:
        self.size = size

    def boxes(self, height: int, width: int) -> list[tuple[int, int, bool]]:
        """The crops of a `height` x `width` frame as ``(top, left, flipped)``, `size` square."""
        ws, hs = (width - self.size) // 4, (height - self.size) // 4
        offsets = [(0, 0), (0, 4 * ws), (4 * hs, 0), (4 * hs, 4 * ws), (2 * hs, 2 * ws)]
        return [(t, l, False) for t, l in offsets] + [(t, l, True) for t, l in offsets]

    def __call__(self, frames: np.ndarray) -> list[np.ndarray]:
        return _crops(self, frames)

    def __repr__(self) -> str:
        return f"TenCrop({self.size})"


def _crops(op: ThreeCrop | TenCrop, frames: np.ndarray) -> list[np.ndarray]:
    """The crops of `op` as views of `frames`, flipped ones as negative-stride views."""
    _check_fits(frames, op.size, op.size, op)
    s = op.size
    crops = [(frames[:, t : t + s, l : l + s], f) for t, l, f in op.boxes(*frames.shape[1:3])]
    return [c[:, :, ::-1] if f else c for c, f in crops]

