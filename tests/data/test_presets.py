"""The uint8 handover and the shared normalisation (dear_ray.data.presets)."""

import cv2
import numpy as np
import pytest
import torch

from dear_ray.data.presets import ClipNormalizer, VideoTransform
from dear_ray.data.presets import build_test_transform, build_train_transform
from dear_ray.data.transforms import MEAN_RGB, STD_RGB, CenterCrop, Flip, ResizeShortSide


def _clip(n=6, h=40, w=53, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, h, w, 3), dtype=np.uint8)


@pytest.mark.parametrize("kind", ["multiscale", "random_resized", "center"])
def test_uint8_handover_normalised_equals_the_float_handover(kind):
    clip = _clip()
    as_float = build_train_transform(32, 40, kind)
    as_uint8 = build_train_transform(32, 40, kind, handover="uint8")
    for seed in range(6):
        ref = as_float(clip, np.random.default_rng(seed))
        raw = as_uint8(clip, np.random.default_rng(seed))
        assert raw.dtype == torch.uint8 and raw.shape == ref.shape == (3, 6, 32, 32)
        # the device's work, done on the CPU: bit for bit the float handover's numbers
        assert torch.equal(as_uint8.normalizer(raw).contiguous(), ref)


@pytest.mark.parametrize("flip", [0.0, 1.0])
def test_both_handovers_resolve_flips_and_crops_exactly(flip):
    clip = _clip(3, 40, 60, seed=4)
    ops = [ResizeShortSide(30), CenterCrop(24), Flip(flip)]
    pixels = Flip(flip)(CenterCrop(24)(ResizeShortSide(30)(clip)), np.random.default_rng(0))
    expected = torch.from_numpy(pixels.copy()).permute(3, 0, 1, 2)
    raw = VideoTransform(ops, handover="uint8")(clip, np.random.default_rng(0))
    assert torch.equal(raw, expected)
    out = VideoTransform(ops)(clip, np.random.default_rng(0))
    # float32: (x - mean) * float32(1 / float64 std), exactly
    inv = torch.tensor([1 / s for s in STD_RGB]).view(3, 1, 1, 1)
    assert torch.equal(out, (expected.float() - torch.tensor(MEAN_RGB).view(3, 1, 1, 1)) * inv)
    # mmcv 1.x imnormalize_ per frame: cv2.subtract(img, mean), cv2.multiply(img, 1 / std), the
    # multiply rounded from float64: within one float32 ulp
    imgs = pixels.astype(np.float32)
    for img in imgs:
        cv2.subtract(img, np.float64(MEAN_RGB).reshape(1, -1), img)
        cv2.multiply(img, 1 / np.float64(STD_RGB).reshape(1, -1), img)
    mmcv = torch.from_numpy(imgs).permute(3, 0, 1, 2)
    ulp = torch.finfo(torch.float32).eps * mmcv.abs().clamp_min(1e-3)
    assert bool(((out - mmcv).abs() <= ulp).all()) and (out == mmcv).float().mean() > 0.5


def test_uint8_handover_test_views_and_memory_layout():
    clip = _clip(4, 36, 60, seed=1)  # two clips of T = 2
    for crops in (1, 3, 10):
        ref = build_test_transform(32, 36, crops)(clip, num_clips=2)
        t = build_test_transform(32, 36, crops, handover="uint8")
        raw = t(clip, num_clips=2)
        assert raw.shape == ref.shape == (2 * crops, 3, 2, 32, 32) and raw.dtype == torch.uint8
        # channels-last view: memory (V, T, H, W, C), no transposing copy was made
        assert raw.permute(0, 2, 3, 4, 1).is_contiguous()
        assert torch.equal(t.normalizer(raw).contiguous(), ref)


def test_uint8_handover_pixels_are_the_resized_crop():
    # no resize (short side already 4) and a centre crop: the uint8 clip IS the input's pixels
    clip = _clip(2, 4, 8, seed=2)
    raw = build_test_transform(4, 4, 1, handover="uint8")(clip)
    expected = torch.from_numpy(clip[:, :, 2:6].copy()).permute(3, 0, 1, 2)
    assert torch.equal(raw[0], expected)
    # never a view of the caller's frames
    clip[:] = 0
    assert torch.equal(raw[0], expected)


def test_normalizer_is_mmcv_imnormalize_on_any_device_shape():
    x = torch.tensor([0, 128, 255], dtype=torch.uint8).view(1, 3, 1, 1, 1).expand(2, 3, 1, 2, 2)
    out = ClipNormalizer()(x)
    assert out.dtype == torch.float32 and out.shape == (2, 3, 1, 2, 2)
    # (x - mean) * (1 / std), float32: (0 - 123.675) / 58.395, (128 - 116.28) / 57.12, ...
    expected = [(0 - MEAN_RGB[0]) / STD_RGB[0], (128 - MEAN_RGB[1]) / STD_RGB[1],
                (255 - MEAN_RGB[2]) / STD_RGB[2]]
    np.testing.assert_allclose(out[1, :, 0, 1, 1].numpy(), expected, rtol=1e-6)
    six = ClipNormalizer((1.0, 2.0, 3.0), (1.0, 1.0, 2.0))(torch.full((1, 2, 3, 1, 1, 1), 5,
                                                                       dtype=torch.uint8))
    assert six[0, 0, :, 0, 0, 0].tolist() == [4.0, 3.0, 1.0]
    with pytest.raises(ValueError, match=r"expects clips \(\.\.\., 3, T, H, W\), got \(2, 4"):
        ClipNormalizer()(torch.zeros(2, 4, 1, 1, 1, dtype=torch.uint8))


def test_uint8_handover_options_are_checked():
    with pytest.raises(ValueError, match="cannot carry ColorJitter"):
        build_train_transform(32, 40, color_jitter=True, handover="uint8")
    with pytest.raises(ValueError, match="unknown handover 'half'; known: float, uint8"):
        VideoTransform([], handover="half")


def test_apply_many_uint8_keeps_the_same_random_choices():
    clip = _clip(4, 40, 53, seed=3)
    t8 = build_train_transform(32, 40, "random_resized", handover="uint8")
    tf = build_train_transform(32, 40, "random_resized")
    for seed in range(4):
        a, b = t8.apply_many([clip, 255 - clip], np.random.default_rng(seed))
        fa, fb = tf.apply_many([clip, 255 - clip], np.random.default_rng(seed))
        assert torch.equal(t8.normalizer(a).contiguous(), fa)
        assert torch.equal(t8.normalizer(b).contiguous(), fb)
