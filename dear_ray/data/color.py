"""MMAction2 v0.x's `ColorJitter(color_space_aug=True)` (TPN's training pipeline), on float clips.

    jitter = ColorJitter()
    params = jitter.draw(rng, num_frames=clip.shape[2])   # one draw a video
    clip = jitter.apply(clip, params)                     # (V, 3, T, H, W) float, 0-255 scale

Semantics follow MMAction2 0.x exactly, quirks included, so a TPN run sees the same augmentation:

- one brightness delta ~ U(-32, 32), contrast and saturation factors ~ U(0.6, 1.4), a hue angle
  ~ U(-18, 18) (times pi: several full turns) and an order coin are drawn per video;
- each of the four distortions is then applied to each FRAME with its own coin (p = 0.5), so the
  frames of one clip may differ in brightness; the order is contrast, saturation, hue or
  saturation, hue, contrast;
- AlexNet-style PCA lighting noise (alpha ~ N(0, 0.1) per eigenvector) is added to every frame;
- nothing is clipped to [0, 255].
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

EIG_VAL = (55.46, 4.794, 1.148)
EIG_VEC = ((-0.5675, 0.7192, 0.4009),
           (-0.5808, -0.0045, -0.8140),
           (-0.5836, -0.6948, 0.4203))
GRAY = (0.299, 0.587, 0.114)
_YIQ = np.array([[0.299, 0.587, 0.114], [0.596, -0.274, -0.321], [0.211, -0.523, 0.311]],
                dtype=np.float32)
_INV_YIQ = np.array([[1.0, 0.956, 0.621], [1.0, -0.272, -0.647], [1.0, -1.107, 1.705]],
                    dtype=np.float32)


@dataclass(frozen=True)
class JitterParams:
    """One video's draw: the shared magnitudes, the order coin, and per-frame coins (T,) bool
    for brightness, contrast, saturation and hue; `lighting` is the RGB offset (3,)."""

    brightness: float
    contrast: float
    saturation: float
    hue: float
    contrast_first: bool
    apply_brightness: np.ndarray
    apply_contrast: np.ndarray
    apply_saturation: np.ndarray
    apply_hue: np.ndarray
    lighting: np.ndarray


def hue_matrix(alpha: float) -> np.ndarray:
    """The (3, 3) matrix M with ``rgb_out = rgb @ M``: a rotation by `alpha` * pi in YIQ space."""
    u, w = np.cos(alpha * np.pi), np.sin(alpha * np.pi)
    rotation = np.array([[1.0, 0.0, 0.0], [0.0, u, -w], [0.0, w, u]], dtype=np.float32)
    return (_INV_YIQ @ rotation @ _YIQ).T.astype(np.float32)


class ColorJitter:
    """Colour-space jitter plus PCA lighting noise (module docstring).

    Args:
        alpha_std: std of the PCA lighting coefficients.
    """

    def __init__(self, alpha_std: float = 0.1) -> None:
        self.alpha_std = alpha_std

    def draw(self, rng: np.random.Generator, num_frames: int) -> JitterParams:
        coins = rng.random((4, num_frames)) > 0.5
        alpha = rng.normal(0.0, self.alpha_std, size=3)
        lighting = (np.asarray(EIG_VEC) * alpha) @ np.asarray(EIG_VAL)
        return JitterParams(
            brightness=float(rng.uniform(-32, 32)), contrast=float(rng.uniform(0.6, 1.4)),
            saturation=float(rng.uniform(0.6, 1.4)), hue=float(rng.uniform(-18, 18)),
            contrast_first=bool(rng.random() > 0.5), apply_brightness=coins[0],
            apply_contrast=coins[1], apply_saturation=coins[2], apply_hue=coins[3],
            lighting=lighting.astype(np.float32))

    def apply(self, clips: torch.Tensor, p: JitterParams) -> torch.Tensor:
        """Jitter float clips ``(V, 3, T, H, W)`` (0-255 scale); every view gets the same draw."""
        if clips.ndim != 5 or clips.shape[1] != 3:
            raise ValueError(f"ColorJitter expects (V, 3, T, H, W) float clips, got {tuple(clips.shape)}")
        if clips.shape[2] != len(p.apply_hue):
            raise ValueError(f"ColorJitter: params drawn for {len(p.apply_hue)} frames, clips have "
                             f"{clips.shape[2]}")

        def where(coins: np.ndarray, changed: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
            return torch.where(torch.from_numpy(coins).view(1, 1, -1, 1, 1), changed, x)

        def contrast(x):
            return where(p.apply_contrast, x * p.contrast, x)

        def saturation(x):
            gray = torch.einsum("vcthw,c->vthw", x, torch.tensor(GRAY)).unsqueeze(1)
            return where(p.apply_saturation, x * p.saturation + gray * (1.0 - p.saturation), x)

        def hue(x):
            m = torch.from_numpy(hue_matrix(p.hue))
            return where(p.apply_hue, torch.einsum("vcthw,cd->vdthw", x, m), x)

        x = where(p.apply_brightness, clips + p.brightness, clips)
        order = (contrast, saturation, hue) if p.contrast_first else (saturation, hue, contrast)
        for op in order:
            x = op(x)
        return x + torch.from_numpy(p.lighting).view(1, 3, 1, 1, 1)

    def __repr__(self) -> str:
        return f"ColorJitter(color_space_aug=True, alpha_std={self.alpha_std})"
