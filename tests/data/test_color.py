"""MMAction2 0.x ColorJitter(color_space_aug=True): the vectorised op against a frame-by-frame
port of MMAction2's loop, its invariants, and its place in the training transform."""

from dataclasses import replace

import numpy as np
import pytest
import torch

from dear_ray.data.color import EIG_VAL, EIG_VEC, GRAY, ColorJitter, frame_maps, hue_matrix
from dear_ray.data.presets import build_train_transform
from dear_ray.data.transforms import MEAN_RGB, STD_RGB


def mmaction_loop(imgs: list[np.ndarray], p) -> list[np.ndarray]:
    """MMAction2's __call__ with the draws taken from `p`: imgs are (H, W, 3) float32 frames."""
    out = []
    for i, img in enumerate(imgs):
        if p.apply_brightness[i]:
            img = img + np.float32(p.brightness)

        def contrast(x):
            return x * np.float32(p.contrast) if p.apply_contrast[i] else x

        def saturation(x):
            if not p.apply_saturation[i]:
                return x
            gray = np.sum(x * np.array(GRAY, dtype=np.float32), 2, keepdims=True) * (1.0 - p.saturation)
            return x * p.saturation + gray

        def hue(x):
            return np.dot(x, hue_matrix(p.hue)) if p.apply_hue[i] else x

        order = (contrast, saturation, hue) if p.contrast_first else (saturation, hue, contrast)
        for op in order:
            img = op(img)
        out.append(img + p.lighting[None, None, :])
    return out


@pytest.mark.parametrize("seed", range(6))
def test_matches_mmaction_frame_loop(seed):
    rng = np.random.default_rng(seed)
    frames = rng.uniform(0, 255, size=(6, 5, 7, 3)).astype(np.float32)  # (T, H, W, 3)
    jitter = ColorJitter()
    p = jitter.draw(rng, num_frames=6)
    clip = torch.from_numpy(frames).permute(3, 0, 1, 2)[None]  # (1, 3, T, H, W)
    got = jitter.apply(clip, p)[0].permute(1, 2, 3, 0).numpy()
    expected = np.stack(mmaction_loop(list(frames), p))
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-3)


def test_draw_ranges_and_per_frame_coins():
    rng = np.random.default_rng(0)
    draws = [ColorJitter().draw(rng, num_frames=8) for _ in range(500)]
    assert all(-32 <= d.brightness < 32 and 0.6 <= d.contrast < 1.4 and 0.6 <= d.saturation < 1.4
               and -18 <= d.hue < 18 for d in draws)
    coins = np.stack([d.apply_hue for d in draws])
    assert 0.45 < coins.mean() < 0.55
    # coins are per frame: most clips mix jittered and untouched frames
    assert np.mean([0 < c.sum() < 8 for c in coins]) > 0.9
    # PCA lighting: lighting = EIG_VEC @ (alpha * EIG_VAL), alpha ~ N(0, 0.1)
    expected_std = 0.1 * np.sqrt((np.asarray(EIG_VEC) ** 2) @ np.asarray(EIG_VAL) ** 2)
    np.testing.assert_allclose(np.std([d.lighting for d in draws], axis=0), expected_std, rtol=0.15)


def test_hue_keeps_grey_and_is_periodic():
    grey = np.full((1, 1, 3), 100.0, dtype=np.float32)
    np.testing.assert_allclose(np.dot(grey, hue_matrix(7.3)), grey, atol=0.5)
    np.testing.assert_allclose(hue_matrix(0.4), hue_matrix(2.4), atol=1e-5)
    np.testing.assert_allclose(hue_matrix(0.0), np.eye(3), atol=2e-3)


def test_saturation_zero_gives_grey_and_no_clipping():
    rng = np.random.default_rng(1)
    p = ColorJitter().draw(rng, num_frames=2)
    on, off = np.ones(2, bool), np.zeros(2, bool)
    p = replace(p, saturation=0.0, contrast=2.0, contrast_first=False, apply_brightness=off,
                apply_contrast=on, apply_saturation=on, apply_hue=off, lighting=np.zeros(3, np.float32))
    clip = torch.tensor([200.0, 100.0, 50.0]).view(1, 3, 1, 1, 1).expand(1, 3, 2, 2, 2)
    out = ColorJitter().apply(clip, p)
    grey = 0.299 * 200 + 0.587 * 100 + 0.114 * 50
    torch.testing.assert_close(out, torch.full_like(out, 2 * grey))  # > 255: not clipped


def test_training_transform_jitters_every_clip_of_a_call_alike():
    rng_frames = np.random.default_rng(2)
    clip = rng_frames.integers(0, 256, size=(4, 40, 48, 3), dtype=np.uint8)
    plain = build_train_transform(32, 40, "center", flip=False)
    jittered = build_train_transform(32, 40, "center", flip=False, color_jitter=True)
    assert "ColorJitter" in repr(jittered)
    a, b = jittered.apply_many([clip, clip], np.random.default_rng(5))
    torch.testing.assert_close(a, b)
    again = jittered(clip, np.random.default_rng(5))
    torch.testing.assert_close(again, a)  # the draw comes from the rng passed in
    base = plain(clip, np.random.default_rng(5))
    assert not torch.allclose(a, base, atol=1e-3)
    # the same draw (crop and flip draw nothing here), applied to the 0-255 views before normalising
    std, mean = torch.tensor(STD_RGB).view(3, 1, 1, 1), torch.tensor(MEAN_RGB).view(3, 1, 1, 1)
    p = ColorJitter().draw(np.random.default_rng(5), num_frames=4)
    expected = ColorJitter().apply((base * std + mean)[None], p)[0]
    torch.testing.assert_close(a, (expected - mean) / std, rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match="explicit numpy Generator"):
        jittered(clip)


def test_apply_checks_shapes():
    p = ColorJitter().draw(np.random.default_rng(0), num_frames=3)
    with pytest.raises(ValueError, match=r"\(V, 3, T, H, W\)"):
        ColorJitter().apply(torch.zeros(3, 3, 4, 4), p)
    with pytest.raises(ValueError, match="drawn for 3 frames, clips have 4"):
        ColorJitter().apply(torch.zeros(1, 3, 4, 2, 2), p)


def test_frame_maps_compose_each_frames_chain():
    rng = np.random.default_rng(3)
    p = ColorJitter().draw(rng, num_frames=5)
    on, off = np.ones(5, bool), np.zeros(5, bool)
    # nothing applied: identity matrices, the lighting offset alone
    quiet = replace(p, apply_brightness=off, apply_contrast=off, apply_saturation=off, apply_hue=off)
    matrices, offsets = frame_maps(quiet)
    np.testing.assert_allclose(matrices, np.broadcast_to(np.eye(3), (5, 3, 3)), atol=1e-7)
    np.testing.assert_allclose(offsets, np.broadcast_to(p.lighting, (5, 3)), atol=1e-6)
    # brightness then contrast: (x + b) * a
    bc = replace(quiet, apply_brightness=on, apply_contrast=on)
    matrices, offsets = frame_maps(bc)
    np.testing.assert_allclose(matrices[0], p.contrast * np.eye(3), rtol=1e-6)
    np.testing.assert_allclose(offsets[0], p.brightness * p.contrast + p.lighting, rtol=1e-5)
