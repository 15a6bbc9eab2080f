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

Every distortion is affine in RGB, so each frame's chain is composed into one 3x3 matrix and
offset (`frame_maps`) and a clip is jittered in one pass: 1.3x the cost of the rest of the
training transform, not 4.6x as op by op (`benchmarks/data_throughput.py`).
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


def frame_maps(p: JitterParams) -> tuple[np.ndarray, np.ndarray]:
    """Each frame's whole jitter as one affine map of its pixels' RGB rows, ``rgb @ A_t + c_t``:
    `(T, 3, 3)` matrices and `(T, 3)` offsets (float32, composed in float64).

    Every distortion is affine in RGB: brightness adds a constant, contrast scales, saturation
    is ``y @ (s I + (1 - s) g 1^T)`` (g = the grey weights) and hue is ``y @ hue_matrix``, so the
    chain of a frame composes into one map and the clip is transformed in a single pass.
    """
    eye = np.eye(3)
    saturation = p.saturation * eye + (1.0 - p.saturation) * np.outer(GRAY, np.ones(3))
    hue = hue_matrix(p.hue).astype(np.float64)
    num_frames = len(p.apply_hue)
    matrices, offsets = np.empty((num_frames, 3, 3)), np.empty((num_frames, 3))
    for t in range(num_frames):
        a, c = eye.copy(), np.full(3, p.brightness if p.apply_brightness[t] else 0.0)
        steps = {"contrast": (p.apply_contrast[t], p.contrast * eye),
                 "saturation": (p.apply_saturation[t], saturation), "hue": (p.apply_hue[t], hue)}
        order = ("contrast", "saturation", "hue") if p.contrast_first else ("saturation", "hue", "contrast")
        for name in order:
            on, m = steps[name]
            if on:
                a, c = a @ m, c @ m
        matrices[t], offsets[t] = a, c + p.lighting
    return matrices.astype(np.float32), offsets.astype(np.float32)


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
        matrices, offsets = frame_maps(p)
        out = torch.einsum("vcthw,tcd->vdthw", clips, torch.from_numpy(matrices).to(clips.dtype))
        return out.add_(torch.from_numpy(offsets).to(clips.dtype).T[None, :, :, None, None])

    def __repr__(self) -> str:
        return f"ColorJitter(color_space_aug=True, alpha_std={self.alpha_std})"
