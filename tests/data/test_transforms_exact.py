"""The train presets at DEAR's sizes (240x320 -> short side 256 -> 224) against MMAction2 0.x's
ops written out with cv2 (mmcv.imresize = cv2.resize INTER_LINEAR), pixel for pixel."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from dear_ray.data.presets import build_train_transform
from dear_ray.data.transforms import (
    MEAN_RGB,
    STD_RGB,
    MultiScaleCrop,
    RandomResizedCrop,
    resize_frames,
)

from ._mmaction2 import mmaction2_train as mmaction2_reference

INV_STD = torch.tensor([1 / s for s in STD_RGB], dtype=torch.float32).view(3, 1, 1, 1)
MEAN = torch.tensor(MEAN_RGB, dtype=torch.float32).view(3, 1, 1, 1)


def mmaction2_train(clip, crop, rng):
    """DEAR's sizes: 240x320 -> short side 256 (341x256) -> crop -> 224."""
    return mmaction2_reference(clip, crop, rng, resized=(341, 256), out=224)


@pytest.fixture(scope="module")
def clip():
    # smooth gradients plus noise: every interpolation weight shows in the pixels
    y, x = np.mgrid[0:240, 0:320]
    rng = np.random.default_rng(3)
    base = np.stack([x * 0.8, y, (x + y) * 0.45], axis=-1)
    return np.stack([np.clip(base + rng.normal(0, 20, base.shape) + 9 * t, 0, 255)
                     for t in range(8)]).astype(np.uint8)


@pytest.mark.parametrize("kind", ["random_resized", "multiscale"])
def test_train_preset_is_mmaction2_pixel_for_pixel(clip, kind):
    crop = (RandomResizedCrop(224) if kind == "random_resized"
            else MultiScaleCrop(224, (1.0, 0.875, 0.75, 0.66), 1, False, 13))
    as_uint8 = build_train_transform(224, 256, kind, handover="uint8")
    as_float = build_train_transform(224, 256, kind)
    before = clip.copy()
    sizes = set()
    for seed in [*range(10), 21, 24]:  # multiscale draws a 224 x 224 crop for seeds 21 and 24
        ref, box = mmaction2_train(clip, crop, np.random.default_rng(seed))
        sizes.add(box)
        raw = as_uint8(clip, np.random.default_rng(seed))
        assert raw.dtype == torch.uint8 and torch.equal(raw, ref), (kind, seed)
        out = as_float(clip, np.random.default_rng(seed))
        assert out.is_contiguous() and torch.equal(out, (ref.float() - MEAN) * INV_STD)
    np.testing.assert_array_equal(clip, before)  # the input is never written to
    if kind == "multiscale":
        assert (224, 224) in sizes  # the crop that needs no second resize was drawn and checked


def test_both_flip_outcomes_are_covered(clip):
    t = build_train_transform(224, 256, "random_resized", handover="uint8")
    drawn = []
    for seed in range(12):
        rng = np.random.default_rng(seed)
        RandomResizedCrop(224).crop_box(256, 341, rng)
        drawn.append(rng.random() < 0.5)
    assert any(drawn) and not all(drawn)  # the seeds above flip some clips and not others
    assert t(clip, np.random.default_rng(0)).shape == (3, 8, 224, 224)


def test_resize_to_the_same_size_is_the_frames_themselves():
    frames = np.random.default_rng(0).integers(0, 256, (2, 30, 40, 3), dtype=np.uint8)
    view = frames[:, 2:26, 5:37]
    out = resize_frames(view, 32, 24)
    assert out is view  # no copy
    ref = np.stack([cv2.resize(f, (32, 24), interpolation=cv2.INTER_LINEAR) for f in view])
    np.testing.assert_array_equal(out, ref)  # what mmcv.imresize gives: the same pixels
