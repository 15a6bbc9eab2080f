"""Scenes: procedural static backgrounds; known class i has scene type i as its own.

A scene type is a (pattern, palette) pair: type i has pattern ``PATTERNS[i % 10]``, and its two
colours are its own (`palettes=None`: texture and tint both identify it) or shared round-robin with
other types (`palettes=N`: type i uses palette i % N, so the tint alone no longer names the scene;
30 types over 3 palettes are the 30 pairs of the 10 patterns and 3 palettes, the first 10 of them
the demo's). Each video draws its own frequency, phase, orientation jitter and noise, so no two
backgrounds are identical. The image is blended towards grey, ``128 + contrast * (img - 128)``: at
low contrast the actor stands out enough for the motion to be learnable (docs/synthetic_data.md).

Held-out scene types (the `test_scuba` split): with `known` = P, scene indices P, P+1, ...
are types no other split ever draws, each a pattern of `HELD_OUT_PATTERNS` (none of them among
`PATTERNS`) in a palette of its own that no training type uses (the palette sequence continued
past the training palettes), so neither texture nor tint was seen in training, as StillMix's SCUBA
puts actors on Places365 / VQGAN / stripe backgrounds the model never saw.
"""

from __future__ import annotations

import colorsys

import numpy as np
from scipy.ndimage import gaussian_filter

PATTERNS: tuple[str, ...] = (
    "stripes_h", "stripes_v", "checkers", "gradient", "dots", "noise", "stripes_diag", "rings",
    "waves", "radial",
)

#: Patterns of the held-out scene types (`test_scuba`), in order: never a training pattern.
HELD_OUT_PATTERNS: tuple[str, ...] = ("crosshatch", "chevrons", "blobs", "spiral")

_GOLDEN = 0.6180339887498949


def scene_names(count: int) -> list[str]:
    """Names of the first `count` scene types, e.g. ``s00_stripes_h``."""
    return [f"s{i:02d}_{PATTERNS[i % len(PATTERNS)]}" for i in range(count)]


def held_out_scene_names(count: int = len(HELD_OUT_PATTERNS)) -> list[str]:
    """Names of the held-out scene types P, P+1, ... (`test_scuba`), e.g. ``h00_crosshatch``."""
    return [f"h{j:02d}_{HELD_OUT_PATTERNS[j % len(HELD_OUT_PATTERNS)]}" for j in range(count)]


def _held_out(scene: int, known: int | None) -> int | None:
    """The held-out index j of scene type `scene` (= known + j), or None for a training type."""
    return None if known is None or scene < known else scene - known


def scene_palette(scene: int, palettes: int | None = None, *, known: int | None = None) -> np.ndarray:
    """The two RGB colours (2, 3) of a scene type, floats in [0, 255], before blending to grey.

    Scene type i uses palette ``i % palettes`` (None: its own, i). Palette hues follow the
    golden-ratio sequence so that consecutive palettes are far apart on the hue circle; the second
    colour is a darker neighbour hue, so the mean tint stays the palette's hue. With `known` = P,
    held-out type P + j takes palette ``T + j``, T the number of palettes the P training types use
    (P, or `palettes` when smaller): a tint no training type has.
    """
    j = _held_out(scene, known)
    if j is not None:
        index = (known if palettes is None else min(palettes, known)) + j
    else:
        index = scene if palettes is None else scene % palettes
    hue = (index * _GOLDEN) % 1.0
    light = colorsys.hsv_to_rgb(hue, 0.85, 1.0)
    dark = colorsys.hsv_to_rgb((hue + 0.08) % 1.0, 0.9, 0.35)
    return 255.0 * np.array([light, dark])


def render_scene(scene: int, rng: np.random.Generator, size: int, *, contrast: float,
                 palettes: int | None = None, known: int | None = None) -> np.ndarray:
    """One background of a scene type.

    Args:
        scene: scene type index (0-based).
        rng: the video's random stream (frequency, phase, orientation jitter, noise).
        size: frame side in pixels; pattern frequencies scale with it.
        contrast: blend factor towards grey, in (0, 1]; 1 keeps full contrast.
        palettes: distinct palettes shared round-robin by the scene types (`scene_palette`).
        known: P, the number of training scene types; `scene` >= P is held-out type
            ``scene - P`` (`HELD_OUT_PATTERNS`, its own palette). None: every index is a training
            type (``PATTERNS[scene % 10]``).

    Returns:
        float64 (size, size, 3) in [0, 255].
    """
    j = _held_out(scene, known)
    pattern = PATTERNS[scene % len(PATTERNS)] if j is None else HELD_OUT_PATTERNS[j % len(HELD_OUT_PATTERNS)]
    unit = size / 64.0
    y, x = np.mgrid[0:size, 0:size].astype(np.float64) + 0.5
    period = float(rng.uniform(9.0, 15.0)) * unit
    phase = float(rng.uniform(0, 2 * np.pi))
    tilt = float(rng.uniform(-0.25, 0.25))
    u = x * np.cos(tilt) + y * np.sin(tilt)
    w = -x * np.sin(tilt) + y * np.cos(tilt)
    if pattern == "stripes_h":
        mix = np.sin(2 * np.pi * w / period + phase) > 0
    elif pattern == "stripes_v":
        mix = np.sin(2 * np.pi * u / period + phase) > 0
    elif pattern == "stripes_diag":
        mix = np.sin(2 * np.pi * (u + w) / (1.4 * period) + phase) > 0
    elif pattern == "checkers":
        mix = (np.sin(np.pi * u / period * 2 + phase) > 0) ^ (np.sin(np.pi * w / period * 2) > 0)
    elif pattern == "gradient":
        angle = float(rng.uniform(0, 2 * np.pi))
        proj = (x - size / 2) * np.cos(angle) + (y - size / 2) * np.sin(angle)
        mix = np.clip(0.5 + proj / size, 0, 1)
    elif pattern == "radial":
        cx, cy = rng.uniform(0, size, 2)
        mix = np.clip(np.hypot(x - cx, y - cy) / (0.8 * size), 0, 1)
    elif pattern == "rings":
        cx, cy = rng.uniform(0, size, 2)
        mix = np.sin(2 * np.pi * np.hypot(x - cx, y - cy) / period + phase) > 0
    elif pattern == "waves":
        mix = 0.5 + 0.25 * (np.sin(2 * np.pi * u / period + phase) + np.sin(2 * np.pi * w / (1.3 * period)))
    elif pattern == "dots":
        cx = (u / period + phase) % 1.0 - 0.5
        cy = (w / period) % 1.0 - 0.5
        mix = np.hypot(cx, cy) < 0.28
    elif pattern == "crosshatch":  # thin lines on both axes: a grid, not checkers
        mix = (np.sin(2 * np.pi * u / period + phase) > 0.7) | (np.sin(2 * np.pi * w / period) > 0.7)
    elif pattern == "chevrons":  # stripes bent into a zigzag
        bend = np.abs((u / period) % 1.0 - 0.5) * period
        mix = np.sin(2 * np.pi * (w + bend) / (0.8 * period) + phase) > 0
    elif pattern == "blobs":  # coarse smoothed noise, thresholded: large flat patches
        field = gaussian_filter(rng.standard_normal((size, size)), sigma=5.0 * unit, mode="wrap")
        mix = field > 0
    elif pattern == "spiral":
        cx, cy = rng.uniform(0, size, 2)
        angle = np.arctan2(y - cy, x - cx)
        mix = np.sin(3 * angle + 2 * np.pi * np.hypot(x - cx, y - cy) / period + phase) > 0
    else:  # noise: smoothed white noise, normalised to [0, 1]
        field = gaussian_filter(rng.standard_normal((size, size)), sigma=2.0 * unit, mode="wrap")
        mix = np.clip(0.5 + field / (4 * field.std() + 1e-9), 0, 1)
    mix = np.asarray(mix, dtype=np.float64)[..., None]
    light, dark = scene_palette(scene, palettes, known=known)
    jitter = rng.uniform(-12, 12, 3)
    img = np.clip(light * mix + dark * (1 - mix) + jitter, 0, 255)
    return 128.0 + contrast * (img - 128.0)
