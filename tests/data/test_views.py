"""Views assembled from distinct frames (dear_ray.data.views) and transforms given a frame map."""

import numpy as np
import pytest
import torch

from dear_ray.data.presets import build_test_transform, build_train_transform
from dear_ray.data.views import float_views, uint8_views


def _clip(n=5, h=40, w=53, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, h, w, 3), dtype=np.uint8)


def test_float_and_uint8_views_by_hand():
    # two distinct frames of 2 x 3 pixels, channel c of pixel (y, x) = 10 y + x + 60 c + 30 f
    y, x = np.mgrid[0:2, 0:3]
    base = np.stack([np.stack([10 * y + x + 60 * c + 30 * f for c in range(3)], axis=-1)
                     for f in range(2)]).astype(np.uint8)
    lut = np.stack([np.arange(256) + 1000 * c for c in range(3)]).astype(np.float32)
    frame_map = np.array([1, 0, 1])  # three clips of one frame: frame 1, frame 0, frame 1
    boxes = [(0, 0, False), (0, 1, True)]  # the left 2 x 2, and the right 2 x 2 mirrored
    out = float_views(base, frame_map, boxes, (2, 2), 3, lut)
    assert out.shape == (3, 2, 3, 1, 2, 2)
    # clip 0 = frame 1, crop 0, channel 2: 10 y + x + 120 + 30 + 2000 at x = 0, 1
    np.testing.assert_array_equal(out[0, 0, 2, 0], [[2150, 2151], [2160, 2161]])
    # clip 1 = frame 0, crop 1 (columns 1, 2 mirrored), channel 0: x = 2, 1
    np.testing.assert_array_equal(out[1, 1, 0, 0], [[2, 1], [12, 11]])
    np.testing.assert_array_equal(out[2], out[0])
    pixels = uint8_views(base, frame_map, boxes, (2, 2), 3, owned=False)
    assert pixels.shape == (3, 2, 1, 2, 2, 3)
    np.testing.assert_array_equal(pixels[1, 1, 0, :, :, 0], [[2, 1], [12, 11]])
    # a flipped view of the frames: the boxes mirror with it
    flipped = float_views(base[:, :, ::-1], None, [(0, 0, False)], (2, 2), 2, lut)
    np.testing.assert_array_equal(flipped[0, 0, 0, 0], [[2, 1], [12, 11]])



@pytest.mark.parametrize("seed", range(6))
def test_float_views_are_the_uint8_views_looked_up(seed):
    # frames shown by one view and by several, boxes flipped or not, a flipped view of the frames
    rng = np.random.default_rng(seed)
    base = _clip(6, 12, 17, seed)
    if seed % 2:
        base = base[:, :, ::-1]
    frame_map = rng.integers(0, 6, 3 * 4)  # three clips of four frames
    boxes = [(int(rng.integers(0, 5)), int(rng.integers(0, 8)), bool(rng.integers(0, 2)))
             for _ in range(3)]
    lut = rng.normal(size=(3, 256)).astype(np.float32)
    out = float_views(base, frame_map, boxes, (8, 10), 3, lut)
    pixels = uint8_views(base, frame_map, boxes, (8, 10), 3, owned=False)  # (3, 3, 4, 8, 10, 3)
    ref = np.stack([lut[c][pixels[..., c]] for c in range(3)], axis=2)
    assert out.dtype == np.float32 and out.flags.c_contiguous
    np.testing.assert_array_equal(out, ref)

PRESETS = {  # name: (transform for a handover, frame height)
    "train multiscale": (lambda h: build_train_transform(32, 40, "multiscale", handover=h), 40),
    "train random_resized": (
        lambda h: build_train_transform(32, 40, "random_resized", handover=h), 40),
    "train centre, no resize": (lambda h: build_train_transform(32, 40, "center", handover=h), 40),
    "test 1 crop": (lambda h: build_test_transform(32, 40, 1, handover=h), 48),
    "test 3 crops": (lambda h: build_test_transform(32, 40, 3, handover=h), 48),
    "test 10 crops": (lambda h: build_test_transform(32, 40, 10, handover=h), 48),
    "test 3 crops, no resize": (lambda h: build_test_transform(32, 40, 3, handover=h), 40),
    "train jitter": (lambda h: build_train_transform(32, 40, color_jitter=True), 48),
}


@pytest.mark.parametrize("handover", ["uint8", "float"])
@pytest.mark.parametrize("name", PRESETS)
def test_a_frame_map_gives_the_transform_of_the_expanded_clip(name, handover):
    make, height = PRESETS[name]
    t = make(handover)
    distinct = _clip(5, height, 53)
    frame_map = np.array([0, 1, 2, 3, 2, 3, 4, 4])  # two clips of 4 frames that share two
    for seed in range(4):  # flips both ways, several crops
        ref = t(distinct[frame_map], np.random.default_rng(seed), num_clips=2)
        out = t(distinct, np.random.default_rng(seed), num_clips=2, frame_map=frame_map)
        assert out.shape == ref.shape and out.dtype == ref.dtype
        assert torch.equal(out, ref), (name, handover, seed)
        if out.dtype == torch.float32:
            assert out.is_contiguous()
        else:  # channels-last: memory (V, T, H, W, C)
            assert out.movedim(-4, -1).is_contiguous()


def test_apply_many_with_a_frame_map_keeps_the_pairs_apart():
    distinct = _clip(4, seed=2)
    frame_map = np.array([3, 2, 1, 0, 0, 1])
    t = build_train_transform(32, 40, "random_resized", handover="uint8")
    a, b = t.apply_many([distinct, 255 - distinct], np.random.default_rng(1), num_clips=1,
                        frame_map=frame_map)
    ra, rb = t.apply_many([distinct[frame_map], 255 - distinct[frame_map]],
                          np.random.default_rng(1))
    assert torch.equal(a, ra) and torch.equal(b, rb)


def test_frame_map_errors():
    t = build_test_transform(32, 40)
    with pytest.raises(ValueError, match="frame_map indexes frames outside the clip's 5"):
        t(_clip(), frame_map=np.array([0, 5]))
    with pytest.raises(ValueError, match="3 frames do not split into 2 clips"):
        t(_clip(), num_clips=2, frame_map=np.array([0, 1, 2]))
