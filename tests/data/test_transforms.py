import numpy as np
import pytest
import torch

from dear_ray.data.transforms import (
    MEAN_RGB,
    STD_RGB,
    CenterCrop,
    Flip,
    MultiScaleCrop,
    RandomResizedCrop,
    ResizeShortSide,
    build_test_transform,
    build_train_transform,
)

MEAN = torch.tensor(MEAN_RGB).view(3, 1, 1, 1)
STD = torch.tensor(STD_RGB).view(3, 1, 1, 1)


def coded_clip(t: int, h: int, w: int) -> np.ndarray:
    """Channel 0 = x + 10 y (exact below 256), channel 1 = 40 t, channel 2 = 7."""
    tt, yy, xx = np.meshgrid(np.arange(t), np.arange(h), np.arange(w), indexing="ij")
    return np.stack([xx + 10 * yy, 40 * tt, np.full_like(tt, 7)], axis=-1).astype(np.uint8)


def denorm(x: torch.Tensor) -> torch.Tensor:
    """(C, T, H, W) normalised -> 0-255 values."""
    return x * STD + MEAN


class ScriptedRng:
    def __init__(self, *draws):
        self.draws = list(draws)

    def integers(self, low, high=None, size=None):
        return self.draws.pop(0)


def test_normalisation_numbers():
    clip = np.zeros((1, 2, 2, 3), np.uint8)
    clip[..., 0], clip[..., 1], clip[..., 2] = 0, 255, 128
    out = build_test_transform(crop_size=2, scale_short=2)(clip)
    assert out.shape == (1, 3, 1, 2, 2) and out.dtype == torch.float32
    # (0 - 123.675) / 58.395, (255 - 116.28) / 57.12, (128 - 103.53) / 57.375
    np.testing.assert_allclose(out[0, :, 0, 0, 0].numpy(), [-2.117904, 2.428571, 0.426492], atol=1e-5)


def test_centre_crop_picks_the_right_pixels():
    clip = coded_clip(2, 6, 8)
    out = build_test_transform(crop_size=4, scale_short=6, crops=1)(clip)
    assert out.shape == (1, 3, 2, 4, 4)
    vals = denorm(out[0]).round()
    # top (6-4)//2 = 1, left (8-4)//2 = 2
    expected = torch.tensor([[x + 10 * y for x in range(2, 6)] for y in range(1, 5)], dtype=torch.float32)
    torch.testing.assert_close(vals[0, 0], expected)
    torch.testing.assert_close(vals[0, 1], expected)
    assert torch.all(vals[1, 0] == 0) and torch.all(vals[1, 1] == 40) and torch.all(vals[2] == 7)


def test_three_crop_positions_and_clip_major_views():
    clip = coded_clip(4, 4, 10)  # two clips of T=2
    out = build_test_transform(crop_size=4, scale_short=4, crops=3)(clip, num_clips=2)
    assert out.shape == (6, 3, 2, 4, 4)
    v = torch.stack([denorm(x) for x in out]).round()
    for clip_i in range(2):
        for crop_i, left in enumerate([0, 3, 6]):  # start, centre (10-4)//2, end
            view = v[clip_i * 3 + crop_i]
            assert view[0, 0, 0, 0] == left and view[0, 1, 3, 3] == left + 3 + 30
            assert view[1, 0, 0, 0] == 40 * 2 * clip_i and view[1, 1, 0, 0] == 40 * (2 * clip_i + 1)


def test_ten_crop_corners_and_flips():
    clip = coded_clip(1, 6, 6)
    out = build_test_transform(crop_size=4, scale_short=6, crops=10)(clip)
    assert out.shape == (10, 3, 1, 4, 4)
    v = torch.stack([denorm(x) for x in out]).round()[:, 0, 0]
    assert v[0, 0, 0] == 0 and v[1, 0, 0] == 2 and v[2, 0, 0] == 20 and v[3, 0, 0] == 22
    assert v[4, 0, 0] == 11  # centre: top 1, left 1
    # view 5 = top-left crop of the flipped frame = the flipped top-right crop
    torch.testing.assert_close(v[5], v[1].flip(-1))


def test_resize_short_side_and_small_sizes():
    frames = torch.full((2, 3, 40, 60), 90, dtype=torch.uint8)
    out = ResizeShortSide(20)(frames)
    assert out.shape == (2, 3, 20, 30) and torch.all(out == 90)
    clip = np.random.default_rng(0).integers(0, 256, (8, 40, 53, 3), dtype=np.uint8)
    for kind in ("multiscale", "random_resized", "center"):
        t = build_train_transform(crop_size=32, scale_short=40, kind=kind)
        assert t(clip, np.random.default_rng(1)).shape == (3, 8, 32, 32)


def test_multiscale_crop_box_matches_mmaction2():
    op = MultiScaleCrop(32, (1, 0.875, 0.75, 0.66), 1, False, 13)
    # sides int(40 s) = 40 35 30 26; candidate 6 is (w, h) = (30, 30), snapped to 32;
    # steps (60-32)//4 = 7, (40-32)//4 = 2; position 10 is (3, 1) steps
    assert op.crop_box(40, 60, ScriptedRng(6, 10)) == (2, 21, 32, 32)
    # candidate 1 is (35, 40): no snapping (|35-32| = 3); steps 6, 0; position 1 = upper right
    assert op.crop_box(40, 60, ScriptedRng(1, 1)) == (0, 24, 40, 35)


def test_random_resized_crop_boxes():
    # area fraction 1 with ratio 1 never fits a 40x60 frame: fallback centred square
    op = RandomResizedCrop(32, area_range=(1.0, 1.0), aspect_ratio_range=(1.0, 1.0))
    assert op.crop_box(40, 60, np.random.default_rng(0)) == (0, 10, 40, 40)
    op = RandomResizedCrop(32, area_range=(0.25, 0.25), aspect_ratio_range=(1.0, 1.0))
    boxes = {op.crop_box(40, 60, np.random.default_rng(s)) for s in range(30)}
    assert all(h == w == 24 and 0 <= t <= 16 and 0 <= l <= 36 for t, l, h, w in boxes)  # round(sqrt(600))
    assert len(boxes) > 20


def test_flip_reverses_columns():
    frames = torch.from_numpy(coded_clip(1, 2, 3)).permute(0, 3, 1, 2)
    out = Flip(1.0)(frames, np.random.default_rng(0))
    assert out[0, 0, 1].tolist() == [12, 11, 10]
    assert Flip(0.0)(frames, np.random.default_rng(0)) is frames


def test_train_transform_reproducible_and_random():
    clip = coded_clip(4, 40, 53)
    t = build_train_transform(crop_size=32, scale_short=40)
    a = t(clip, np.random.default_rng(5))
    torch.testing.assert_close(a, t(clip, np.random.default_rng(5)))
    outs = {tuple(t(clip, np.random.default_rng(s))[0, 0, 0, :2].tolist()) for s in range(10)}
    assert len(outs) > 1


def test_apply_many_uses_the_same_crop_and_flip():
    clip = np.random.default_rng(0).integers(0, 256, (4, 40, 53, 3), dtype=np.uint8)
    t = build_train_transform(crop_size=32, scale_short=40, kind="random_resized")
    for seed in range(5):
        a, b = t.apply_many([clip, 255 - clip], np.random.default_rng(seed))
        # resizing is linear, so the inverted clip maps to 255 minus the output (up to rounding)
        diff = (denorm(a) + denorm(b) - 255).abs()
        assert diff.max() <= 2.01 and diff.mean() < 0.5


def test_input_is_not_modified():
    clip = coded_clip(2, 40, 53)
    before = clip.copy()
    build_train_transform(32, 40)(clip, np.random.default_rng(0))
    build_test_transform(32, 40, crops=3)(clip)
    np.testing.assert_array_equal(clip, before)


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: build_train_transform(kind="jitter"), "unknown train transform kind 'jitter'; known: multiscale"),
        (lambda: build_train_transform(crop_size=64, scale_short=32), "crop_size <= scale_short"),
        (lambda: build_test_transform(crops=5), "crops must be 1, 3 or 10"),
        (lambda: build_train_transform(32, 40)(np.zeros((2, 40, 40, 3), np.uint8)), "pass an explicit numpy Generator"),
        (lambda: build_test_transform(4, 4)(np.zeros((2, 4, 4, 3), np.float32)), "expected a uint8 clip"),
        (lambda: build_test_transform(4, 4)(np.zeros((3, 4, 4, 3), np.uint8), num_clips=2), "do not split into 2"),
        (lambda: CenterCrop(8)(torch.zeros(1, 3, 6, 10, dtype=torch.uint8)), "crop 8x8 .* 6x10"),
    ],
)
def test_errors(call, message):
    with pytest.raises(ValueError, match=message):
        call()
