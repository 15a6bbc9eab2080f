"""A transform's output views, assembled from its transformed distinct frames.

A clip reaches the transform as its DISTINCT frames (each decoded once, `dear_ray.data.decode`
`SampledClip`) and a frame map: frame ``n`` of the sampled clips (``N = num_clips * T``) is
``frames[frame_map[n]]``. The spatial ops (resize, crop, flip) run once on the distinct frames;
the views are then copied out of the result:

- `uint8_views`: ``(num_clips, num_crops, T, h, w, 3)`` uint8, contiguous (or, for one clip and
  one crop whose pixels the transform owns, that memory itself: no copy);
- `float_views`: ``(num_clips, num_crops, 3, T, h, w)`` float32, contiguous, normalised by a
  per-channel table (`ClipNormalizer.lut`): each distinct frame is converted ONCE (split into
  planes, table look-up), then its crops are copied to every view that shows it. MMAction2's
  overlapping test clips (10 clips of 32 frames at interval 2 in a 64-frame video read the same
  32 frames) and its three overlapping crops are thus converted once, not per view.

`base` is the frames after the ops, ``(U, H, W, 3)`` uint8 (a view is fine, also a horizontally
flipped one), `boxes` the crops ``(top, left, flipped)`` of ``h x w`` in base's coordinates.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

Box = tuple[int, int, bool]  # (top, left, flipped)


def _unflipped(base: np.ndarray, boxes: Sequence[Box], w: int) -> tuple[np.ndarray, list[Box]]:
    """`base` with positive strides and the boxes in its coordinates: a box of a horizontally
    flipped view is the mirrored box of the underlying frames, flipped once more."""
    if base.strides[2] >= 0:
        return base, list(boxes)
    width = base.shape[2]
    return base[:, :, ::-1], [(t, width - l - w, not f) for t, l, f in boxes]


def _frame_map(frame_map: np.ndarray | None, count: int) -> np.ndarray:
    return np.arange(count) if frame_map is None else np.asarray(frame_map, dtype=np.int64)


def unflip_in_place(frames: np.ndarray) -> np.ndarray | None:
    """For a horizontally flipped view of contiguous frames ``(N, h, w, 3)``: flip the pixels of
    the underlying array in place (``cv2.flip`` per frame) and return it, contiguous, now holding
    the flipped picture; None for any other view. Only for memory the transform owns."""
    if frames.strides[2] >= 0:
        return None
    base = frames[:, :, ::-1]
    if not base.flags.c_contiguous or not base.flags.writeable:
        return None
    for i in range(base.shape[0]):
        cv2.flip(base[i], 1, dst=base[i])
    return base


def uint8_views(base: np.ndarray, frame_map: np.ndarray | None, boxes: Sequence[Box],
                size: tuple[int, int], num_clips: int, owned: bool) -> np.ndarray:
    """``(num_clips, num_crops, T, h, w, 3)`` uint8 views (module docstring).

    Args:
        owned: `base` is memory of the transform's own (a resized crop), never the caller's: with
            one clip, one full-frame box and no frame map it is returned without a copy (a
            flipped view is unflipped where it lies).
    """
    h, w = size
    whole = len(boxes) == 1 and boxes[0][:2] == (0, 0) and base.shape[1:3] == (h, w)
    if owned and whole and frame_map is None and not boxes[0][2]:
        own = unflip_in_place(base) if base.strides[2] < 0 else base
        if own is not None and own.flags.c_contiguous:
            return own.reshape(num_clips, 1, -1, h, w, 3)
    src, boxes = _unflipped(base, boxes, w)
    index = _frame_map(frame_map, src.shape[0]).reshape(num_clips, -1)
    out = np.empty((num_clips, len(boxes), index.shape[1], h, w, 3), dtype=np.uint8)
    for k, (top, left, flipped) in enumerate(boxes):
        window = src[:, top : top + h, left : left + w]
        for i, frames in enumerate(index):
            for t, f in enumerate(frames):
                if flipped:  # cv2: numpy copies negative strides ~20x slower
                    cv2.flip(window[f], 1, dst=out[i, k, t])
                else:
                    np.copyto(out[i, k, t], window[f])
    return out


def _views_of(frame_map: np.ndarray | None, count: int, num_clips: int
              ) -> tuple[list[list[tuple[int, int]]], int]:
    """For each of `count` distinct frames the (clip, t) of the views that show it; T."""
    index = _frame_map(frame_map, count)
    t_len = len(index) // num_clips
    views_of = [[] for _ in range(count)]
    for n, f in enumerate(index.tolist()):
        views_of[f].append(divmod(n, t_len))
    return views_of, t_len


def float_views(base: np.ndarray, frame_map: np.ndarray | None, boxes: Sequence[Box],
                size: tuple[int, int], num_clips: int, lut: np.ndarray) -> np.ndarray:
    """``(num_clips, num_crops, 3, T, h, w)`` float32 views normalised by `lut` ``(3, 256)``
    (module docstring): each distinct frame is split into planes and looked up once; a frame
    with one view and one full-frame box is looked up straight into the output."""
    h, w = size
    src, boxes = _unflipped(base, boxes, w)
    views_of, t_len = _views_of(frame_map, src.shape[0], num_clips)
    out = np.empty((num_clips, len(boxes), 3, t_len, h, w), dtype=np.float32)
    H, W = src.shape[1:3]
    whole = len(boxes) == 1 and boxes[0][:2] == (0, 0) and (H, W) == (h, w)
    planes = np.empty((3, H, W), dtype=np.uint8)
    looked_up = np.empty((3, H, W), dtype=np.float32)
    unflipped = np.empty((H, W, 3), dtype=np.uint8)
    crop = np.empty((3, h, w), dtype=np.float32)
    for f, views in enumerate(views_of):
        if not views:
            continue
        frame = src[f]
        if whole and boxes[0][2]:  # the whole frame flipped: flip the uint8 pixels once
            frame = cv2.flip(frame, 1, dst=unflipped)
        cv2.split(frame, [planes[0], planes[1], planes[2]])
        if whole and len(views) == 1:
            i, t = views[0]
            for c in range(3):
                cv2.LUT(planes[c], lut[c], dst=out[i, 0, c, t])
            continue
        for c in range(3):
            cv2.LUT(planes[c], lut[c], dst=looked_up[c])
        for k, box in enumerate(boxes):
            if whole or len(views) > 1:
                view = looked_up if whole else _crop_of(looked_up, box, size, crop)
                for i, t in views:
                    np.copyto(out[i, k, :, t], view)
            else:
                _crop_of(looked_up, box, size, out[views[0][0], k, :, views[0][1]])
    return out


def _crop_of(planes: np.ndarray, box: Box, size: tuple[int, int], dst: np.ndarray) -> np.ndarray:
    """The box of float planes ``(3, H, W)`` copied into `dst` ``(3, h, w)``, mirrored when
    flipped. For a frame in several views `dst` is a contiguous buffer the views then copy as one
    block each (a window of the planes' rows copies several times slower)."""
    (top, left, flipped), (h, w) = box, size
    window = planes[:, top : top + h, left : left + w]
    if flipped:
        for c in range(3):
            cv2.flip(window[c], 1, dst=dst[c])
    else:
        np.copyto(dst, window)
    return dst


def uint8_planes(views: np.ndarray) -> np.ndarray:
    """uint8 views ``(V, T, h, w, 3)`` -> planes ``(V, 3, T, h, w)`` (split per frame by OpenCV:
    numpy's transposing copy is several times slower)."""
    v_count, t_len = views.shape[:2]
    planes = np.empty((v_count, 3, t_len, *views.shape[2:4]), dtype=np.uint8)
    for v in range(v_count):
        for t in range(t_len):
            cv2.split(views[v, t], [planes[v, 0, t], planes[v, 1, t], planes[v, 2, t]])
    return planes
