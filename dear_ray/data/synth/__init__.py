"""The embedded default data set: synthetic biased actions (SPEC 5).

Real h264 videos of a rimmed sprite (the "actor") whose MOTION is the class, over a procedural
background (the "scene"). Each known class has its own scene type; in train/val/test the scene
matches the class with probability `bias`, in test_shifted it is independent of the class, and each
unknown class borrows a known class's scene with probability `bias`. A scene-biased model therefore
loses accuracy on test_shifted and calls unknowns known with confidence; a motion model does not.

Layout written under ``out_dir``::

    videos/<class>/<video_id>.mp4       h264, yuv420p, T frames S x S (video_id = file stem, unique)
    classes.txt, unknown_classes.txt    one class name a line (line i = label i)
    train.txt val.txt test.txt test_shifted.txt unknown.txt
                                        MMAction2 lists: ``videos/<class>/<id>.mp4 <0-based label>``
                                        (unknown.txt labels: the unknown class index 0..U-1)
    scenes.txt                          the P = K scene type names
    videos.csv                          truth per video: split, class, label, scene
    scene_labels.npy / .parquet         noisy soft scene pseudo-labels (SDN layout / plain parquet)
    detections.npy / .parquet           per-frame actor boxes as SDN "human detections"
    manifest.json                       parameters, seed, counts, sha256 of every file (written last)
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from dear_ray.data.synth.generate import (
    SPLITS,
    SynthParams,
    VideoTask,
    encode_mp4,
    plan_videos,
    render_video,
)
from dear_ray.data.synth.motions import MOTIONS, SHAPES
from dear_ray.data.synth.scenes import PATTERNS
from dear_ray.data.synth.summary import check_bias, summarize_dataset, verify_checksums


def generate_dataset(
    out_dir: str | Path,
    *,
    seed: int = 0,
    known_classes: int = 10,
    unknown_classes: int = 6,
    videos_per_class: int = 60,
    frames: int = 16,
    size: int = 64,
    bias: float = 0.9,
    contrast: float = 0.15,
    scene_label_noise: float = 0.1,
    split_sizes: Mapping[str, int] | None = None,
    workers: int = 2,
    progress: bool = True,
) -> dict:
    """Generate the synthetic biased-actions data set (SPEC 5) into `out_dir`.

    Args:
        out_dir: output folder; created if needed. A previous synthetic data set there is replaced
            (its ``videos/`` folder is deleted); a ``videos/`` folder of anything else is refused.
        seed: the data set's seed (>= 0); same seed and parameters, same bytes of every list and label.
        known_classes: K, the first K motions of `MOTIONS` (also the number of scene types P).
        unknown_classes: U, the next U motions.
        videos_per_class: training videos per known class; by default val gets n/6, test,
            test_shifted and unknown n/3 per class (at least 1).
        frames: T, frames per video (>= 4).
        size: frame side S in pixels (even, >= 32); actor radius, rim, speed and textures scale
            with S/64.
        bias: P(scene = the class's scene) in train/val/test, and P(scene = the paired scene) for
            unknown classes; 1/K means no bias. Exactly round(bias * n) videos per class match.
        contrast: background blend towards grey, ``128 + contrast * (img - 128)``.
        scene_label_noise: probability that a pseudo-label peaks on a wrong scene.
        split_sizes: videos per class overriding the defaults, e.g. ``{"test": 30}``.
        workers: processes rendering and encoding (the output does not depend on it).
        progress: show a tqdm bar and print the elapsed time.

    Returns:
        The manifest (also written to ``manifest.json``).

    Raises:
        ValueError: a parameter out of range (the message names it and what is allowed).
        FileExistsError: `out_dir` holds a ``videos/`` folder that this generator did not write.
    """
    from dear_ray.data.synth.generate import generate

    params = SynthParams(
        seed=seed, known_classes=known_classes, unknown_classes=unknown_classes,
        videos_per_class=videos_per_class, frames=frames, size=size, bias=bias, contrast=contrast,
        scene_label_noise=scene_label_noise, split_sizes=dict(split_sizes or {}),
    )
    return generate(params, Path(out_dir), workers=workers, progress=progress)


__all__ = [
    "MOTIONS",
    "PATTERNS",
    "SHAPES",
    "SPLITS",
    "SynthParams",
    "VideoTask",
    "check_bias",
    "encode_mp4",
    "generate_dataset",
    "plan_videos",
    "render_video",
    "summarize_dataset",
    "verify_checksums",
]
