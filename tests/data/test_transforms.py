import cv2
import numpy as np
import pytest
import torch

from dear_ray.data.presets import build_test_transform, build_train_transform
from dear_ray.data.transforms import (
    MEAN_RGB,
    STD_RGB,
    CenterCrop,
    Flip,
    MultiScaleCrop,
    RandomResizedCrop,
    ResizeShortSide,
    ThreeCrop,
    rescale_size,
    resize_frames,
)

from ._mmaction2 import mmaction2_train

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


def test_ten_crop_is_mmaction2s():
    # MMAction2 0.x TenCrop: steps (14-4)//4 = 2, corners at 4 steps = 8 (torchvision: 10)
    clip = np.zeros((1, 14, 14, 3), np.uint8)
    clip[0, :, :, 0] = np.arange(14)[None, :]
    clip[0, :, :, 1] = np.arange(14)[:, None]
    out = build_test_transform(crop_size=4, scale_short=14, crops=10)(clip)
    assert out.shape == (10, 3, 1, 4, 4)
    v = torch.stack([denorm(x) for x in out]).round()[:, :2, 0]
    lefts_tops = [(int(v[i, 0, 0, 0]), int(v[i, 1, 0, 0])) for i in range(5)]
    assert lefts_tops == [(0, 0), (8, 0), (0, 8), (8, 8), (4, 4)]
    torch.testing.assert_close(v[5:], v[:5].flip(-1))


def test_rescale_size_rounds_as_mmcv():
    # mmcv rescale_size((400, 240), (inf, 256)): 400 * 256 / 240 = 426.67 -> int(x + 0.5) = 427
    assert rescale_size(400, 240, 256) == (427, 256)
    assert rescale_size(320, 240, 256) == (341, 256)  # 341.33
    assert rescale_size(240, 400, 256) == (256, 427)


def test_resize_is_cv2_linear_without_antialiasing():
    # hand values: 8 -> 4 columns samples source x = 2 x' + 0.5, the mean of columns 2x', 2x'+1;
    # an antialiased resize would blend the neighbouring pair in as well
    row = np.array([0, 0, 100, 100, 0, 0, 100, 100], np.uint8)
    frames = np.repeat(np.repeat(row[None, None, :, None], 2, 1), 3, 3)  # (1, 2, 8, 3)
    out = resize_frames(frames, 4, 2)
    assert out[0, 0, :, 0].tolist() == [0, 100, 0, 100]
    # 2 -> 4 upscale (half-pixel centres, edges clamped): 0, 25, 75, 100
    up = resize_frames(np.array([0, 100], np.uint8).reshape(1, 1, 2, 1).repeat(3, 3), 4, 1)
    assert up[0, 0, :, 0].tolist() == [0, 25, 75, 100]


def test_resize_short_side_equals_mmcv_imresize_on_a_clip():
    clip = np.random.default_rng(0).integers(0, 256, (3, 240, 400, 3), dtype=np.uint8)
    out = ResizeShortSide(256)(clip)
    assert out.shape == (3, 256, 427, 3) and out.dtype == np.uint8
    ref = np.stack([cv2.resize(f, (427, 256), interpolation=cv2.INTER_LINEAR) for f in clip])
    np.testing.assert_array_equal(out, ref)
    down = ResizeShortSide(112)(clip)  # 186.67 -> 187
    ref = np.stack([cv2.resize(f, (187, 112), interpolation=cv2.INTER_LINEAR) for f in clip])
    np.testing.assert_array_equal(down, ref)


def test_train_pipeline_is_mmaction2s_resize_crop_resize_flip_normalise():
    clip = np.random.default_rng(1).integers(0, 256, (2, 60, 90, 3), dtype=np.uint8)
    for kind, crop in (("multiscale", MultiScaleCrop(32, (1.0, 0.875, 0.75, 0.66), 1, False, 13)),
                       ("random_resized", RandomResizedCrop(32))):
        t = build_train_transform(32, 40, kind)
        for seed in range(4):
            out = t(clip, np.random.default_rng(seed))
            ref, _ = mmaction2_train(clip, crop, np.random.default_rng(seed), resized=(60, 40),
                                     out=32)
            ref = (ref.float() - MEAN) / STD
            torch.testing.assert_close(out, ref)


def test_three_crop_last_crop_at_twice_the_half_step():
    # 341-wide frames (UCF-101 at short side 256): step (341 - 256) // 2 = 42, last crop at 84
    frames = np.zeros((1, 256, 341, 3), np.uint8)
    frames[..., 0] = np.arange(341) % 256
    frames[..., 1] = np.arange(341) // 256
    lefts = [int(c[0, 0, 0, 0]) + 256 * int(c[0, 0, 0, 1]) for c in ThreeCrop(256)(frames)]
    assert lefts == [0, 42, 84]
    tall = np.zeros((1, 341, 256, 3), np.uint8)
    tall[..., 0] = (np.arange(341) % 256)[:, None]
    assert [int(c[0, 0, 0, 0]) for c in ThreeCrop(256)(tall)] == [0, 42, 84]


def test_normalisation_takes_mean_and_std():
    clip = np.full((1, 2, 2, 3), 100, np.uint8)
    sdn = (114.77, 107.74, 99.48)
    out = build_test_transform(2, 2, mean=sdn, std=(1, 1, 1))(clip)
    np.testing.assert_allclose(out[0, :, 0, 0, 0].numpy(), [-14.77, -7.74, 0.52], atol=1e-5)
    out = build_train_transform(2, 2, "center", flip=False, mean=sdn, std=(2, 2, 2))(
        clip, np.random.default_rng(0))
    np.testing.assert_allclose(out[:, 0, 0, 0].numpy(), [-7.385, -3.87, 0.26], atol=1e-5)


def test_antialias_resize_option():
    clip = np.random.default_rng(0).integers(0, 256, (1, 80, 120, 3), dtype=np.uint8)
    aa = ResizeShortSide(40, "antialias")(clip)
    assert aa.shape == (1, 40, 60, 3)
    # antialiasing averages noise: a smaller spread than cv2's 2-tap samples
    assert aa.std() < 0.8 * ResizeShortSide(40)(clip).std()
    with pytest.raises(ValueError, match="unknown resize 'area'; known: cv2, antialias"):
        build_test_transform(4, 4, resize="area")


def test_resize_short_side_and_small_sizes():
    frames = np.full((2, 40, 60, 3), 90, dtype=np.uint8)
    out = ResizeShortSide(20)(frames)
    assert out.shape == (2, 20, 30, 3) and np.all(out == 90)
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
    frames = coded_clip(1, 2, 3)
    out = Flip(1.0)(frames, np.random.default_rng(0))
    assert out[0, 1, :, 0].tolist() == [12, 11, 10] and np.shares_memory(out, frames)
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
        (lambda: CenterCrop(8)(np.zeros((1, 6, 10, 3), np.uint8)), "crop 8x8 .* 6x10"),
    ],
)
def test_errors(call, message):
    with pytest.raises(ValueError, match=message):
        call()


@pytest.mark.parametrize("size", [(240, 320), (226, 400), (480, 640), (263, 351), (60, 90)])
def test_resize_rows_equals_the_rows_of_the_full_resize(size):
    # bands start every height / gcd(H, height) output rows: 16 for 240 -> 256, 128 for 226,
    # 256 (no band) for 263
    from dear_ray.data.transforms import resize_rows

    H, W = size
    frames = np.random.default_rng(H).integers(0, 256, (2, H, W, 3), dtype=np.uint8)
    width, height = rescale_size(W, H, 40 if H < 100 else 256)
    full = np.stack([cv2.resize(f, (width, height), interpolation=cv2.INTER_LINEAR)
                     for f in frames])
    rng = np.random.default_rng(0)
    banded = 0
    for _ in range(25):
        h = int(rng.integers(1, height + 1))
        top = int(rng.integers(0, height - h + 1))
        band, first = resize_rows(frames, width, height, top, top + h)
        banded += band.shape[1] < height
        np.testing.assert_array_equal(band[:, top - first : top - first + h],
                                      full[:, top : top + h])
    assert (banded > 5) == (H != 263)  # most boxes resized only a band


def test_short_side_resize_and_box_crop_fused_equal_the_two_ops():
    from dear_ray.data.transforms import resize_short_side_and_crop

    clip = np.random.default_rng(5).integers(0, 256, (3, 240, 320, 3), dtype=np.uint8)
    resize = ResizeShortSide(256)
    for crop in (RandomResizedCrop(224), MultiScaleCrop(224, (1, 0.8), 0, False, 5)):
        for seed in range(8):
            fused = resize_short_side_and_crop(clip, resize, crop, np.random.default_rng(seed))
            np.testing.assert_array_equal(fused, crop(resize(clip), np.random.default_rng(seed)))


def test_sdn_test_rounding_floors_the_long_side_and_rounds_the_offset_half_to_even():
    # SDN's Scale(4) on 10 x W frames: int(4 * W / 10); CenterCrop(4): int(round((w - 4) / 2.))
    # (Python 3: half to even). MMAction2: int(0.4 W + 0.5) and (w - 4) // 2.
    assert rescale_size(19, 10, 4, "sdn") == (7, 4) and rescale_size(19, 10, 4) == (8, 4)  # 7.6
    assert rescale_size(10, 23, 4, "sdn") == (4, 9) and rescale_size(10, 23, 4) == (4, 9)  # 9.2
    assert rescale_size(340, 256, 112, "sdn") == (148, 112)  # 148.75; MMAction2: 149
    sdn, mma = CenterCrop(4, "sdn"), CenterCrop(4)
    assert (sdn.offset(7), mma.offset(7)) == (2, 1)  # 1.5 -> 2 (even) vs 1
    assert (sdn.offset(9), mma.offset(9)) == (2, 2)  # 2.5 -> 2 (even), as the floor
    assert (sdn.offset(8), sdn.offset(4)) == (2, 0)
    # the whole test view of 10 x 18 frames: SDN resizes to 7 x 4 (7.2) and crops columns 2-5,
    # MMAction2 resizes to 7 x 4 too and crops columns 1-4
    clip = coded_clip(2, 10, 18)
    resized = np.stack([cv2.resize(f, (7, 4), interpolation=cv2.INTER_LINEAR) for f in clip])
    for rounding, left in (("sdn", 2), ("mmaction2", 1)):
        views = build_test_transform(4, 4, 1, handover="uint8", rounding=rounding)(clip)
        expected = torch.from_numpy(resized[:, :, left : left + 4].copy()).permute(3, 0, 1, 2)
        assert torch.equal(views[0], expected), rounding
    with pytest.raises(ValueError, match="unknown rounding 'python2'; known: mmaction2, sdn"):
        CenterCrop(4, "python2")
