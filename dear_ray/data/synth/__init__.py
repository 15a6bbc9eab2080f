"""The embedded data sets: synthetic biased actions (docs/synthetic_data.md).

Real h264 videos of a rimmed sprite (the "actor") whose MOTION is the class, over a procedural
background (the "scene"). Known class i has scene type i as its own: in train/val/test the scene is
the class's own with probability `bias`, in test_shifted it is independent of the class, and each
unknown class borrows a known class's scene with probability `bias`. A scene-biased model therefore
loses accuracy on test_shifted and calls unknowns known with confidence; a motion model does not.
`test_scuba` puts the known motions on held-out scene types no other split draws, and `test_scufo`
repeats one frame of each `test_scuba` clip for its length (StillMix, ICCV 2023; pairing by video
id, docs/static_bias.md). Named classes and more scene types than classes make other sets, such as
the demo's pretraining set (`dear_ray.demo.DEMO_DATA`).

The files written under ``out_dir``, the demo's three sets, how the defaults were chosen and what
they were measured to give: docs/synthetic_data.md.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from dear_ray.data.synth.encode import encode_mp4, encode_still_mp4
from dear_ray.data.synth.generate import (
    SPLITS,
    STATIC_BIAS_SPLITS,
    SynthParams,
    VideoTask,
    plan_videos,
    render_video,
)
from dear_ray.data.synth.motions import MOTIONS, SHAPES, VAL_UNKNOWN_MOTIONS
from dear_ray.data.synth.scenes import HELD_OUT_PATTERNS, PATTERNS
from dear_ray.data.synth.summary import check_bias, summarize_dataset, verify_checksums


def generate_dataset(
    out_dir: str | Path,
    *,
    seed: int = 0,
    known_classes: int | None = None,
    unknown_classes: int | None = None,
    classes: Sequence[str] | None = None,
    unknown_motions: Sequence[str] | None = None,
    val_unknown_motions: Sequence[str] | None = None,
    scene_types: int | None = None,
    videos_per_class: int = 60,
    frames: int = 16,
    size: int = 40,
    bias: float = 0.9,
    contrast: float = 0.08,
    palettes: int | None = 3,
    actor_radius: float = 10.0,
    actor_speed: float = 2.5,
    rim: float = 2.0,
    scene_label_noise: float = 0.1,
    split_sizes: Mapping[str, int] | None = None,
    workers: int = 2,
    progress: bool = True,
) -> dict:
    """Generate a synthetic biased-actions data set into `out_dir` (docs/synthetic_data.md).

    Args:
        out_dir: output folder; created if needed. A previous synthetic data set there is replaced
            (its ``videos/`` folder is deleted); a ``videos/`` folder of anything else is refused.
        seed: the data set's seed (>= 0); same seed and parameters, same bytes of every list and label.
        known_classes: K, the first K motions of `MOTIONS` (default 10; with `classes`: unset or
            its length).
        unknown_classes: U, the next U motions (default 6; with `classes`: unset or 0).
        classes: the known motions by name, in label order, instead of the first K.
        unknown_motions: the unknown motions by name, instead of the next U.
        val_unknown_motions: the validation unknown motions (split ``val_unknown``, on which
            detector settings are chosen; never test unknowns) by name; default
            `VAL_UNKNOWN_MOTIONS` without `classes`, none with them; ``()`` for none.
        scene_types: P >= K scene types (default K); known class i owns type i, the others are no
            class's own (the pretraining set's many scenes).
        videos_per_class: training videos per known class; by default val and test_scuba get
            n/6, test, test_shifted, unknown and val_unknown n/3 per class (at least 1); test_scufo one clip
            per test_scuba clip.
        frames: T, frames per video (>= 4).
        size: frame side S in pixels (even, >= 32); actor radius, rim, speed and textures scale
            with S/64. (The decord build in use fails on frames 48 or 72 pixels wide.)
        bias: P(scene = the class's scene) in train/val/test, and P(scene = the paired scene) for
            unknown classes; 1/P means no bias. Exactly round(bias * n) videos per class match.
        contrast: background blend towards grey, ``128 + contrast * (img - 128)``.
        palettes: distinct colour palettes, shared round-robin by the scene types (scene i uses
            palette i % palettes; 3 for 10 scene types: each tint is shared by 3-4 of them,
            their faint texture tells them apart); None (or >= known_classes) gives every scene type its own
            palette, so its tint alone names it.
        actor_radius: the actor's mean circumradius in pixels at 64x64 (each draws +-22%).
        actor_speed: the actor's mean speed in pixels per frame at 64x64 (each draws +-30%).
        rim: the width of the actor's black or white rim in pixels at 64x64.
        scene_label_noise: probability that a pseudo-label peaks on a wrong scene.
        split_sizes: videos per class overriding the defaults, e.g. ``{"test": 30}``;
            ``test_scufo`` may only be 0 (no SCUFO clips) or the test_scuba size.
        workers: processes rendering and encoding (the output does not depend on it).
        progress: show a tqdm bar and print the elapsed time.

    Returns:
        The manifest (also written to ``manifest.json``).

    Raises:
        ValueError: a parameter out of range (the message names it and what is allowed).
        FileExistsError: `out_dir` holds a ``videos/`` folder that this generator did not write.
    """
    from dear_ray.data.synth.build import generate

    params = SynthParams(
        seed=seed, known_classes=known_classes, unknown_classes=unknown_classes,
        classes=None if classes is None else tuple(classes),
        unknown_motions=None if unknown_motions is None else tuple(unknown_motions),
        val_unknown_motions=None if val_unknown_motions is None else tuple(val_unknown_motions),
        scene_types=scene_types, videos_per_class=videos_per_class, frames=frames, size=size,
        bias=bias, contrast=contrast,
        palettes=palettes, actor_radius=actor_radius, actor_speed=actor_speed, rim=rim,
        scene_label_noise=scene_label_noise, split_sizes=dict(split_sizes or {}),
    )
    return generate(params, Path(out_dir), workers=workers, progress=progress)


__all__ = [
    "HELD_OUT_PATTERNS",
    "MOTIONS",
    "PATTERNS",
    "SHAPES",
    "SPLITS",
    "STATIC_BIAS_SPLITS",
    "SynthParams",
    "VAL_UNKNOWN_MOTIONS",
    "VideoTask",
    "check_bias",
    "encode_mp4",
    "encode_still_mp4",
    "generate_dataset",
    "plan_videos",
    "render_video",
    "summarize_dataset",
    "verify_checksums",
]
