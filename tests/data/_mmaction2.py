"""MMAction2 0.x's training pipeline written out with cv2 (mmcv.imresize = cv2.resize INTER_LINEAR),
the reference the transform tests compare the presets with."""

from __future__ import annotations

import cv2
import numpy as np
import torch


def mmaction2_train(clip, crop, rng, *, resized: tuple[int, int], out: int):
    """Resize to `resized` (w, h) -> crop (the preset's box, drawn from `rng`) -> Resize((out, out),
    keep_ratio=False) -> Flip(0.5), frame by frame; uint8 (3, T, out, out) and the box's (h, w)."""
    width, height = resized
    frames = [cv2.resize(f, (width, height), interpolation=cv2.INTER_LINEAR) for f in clip]
    top, left, h, w = crop.crop_box(height, width, rng)
    frames = np.stack([cv2.resize(np.ascontiguousarray(f[top:top + h, left:left + w]), (out, out),
                                  interpolation=cv2.INTER_LINEAR) for f in frames])
    if rng.random() < 0.5:
        frames = frames[:, :, ::-1]
    return torch.from_numpy(frames.copy()).permute(3, 0, 1, 2), (h, w)
