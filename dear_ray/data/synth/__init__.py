"""The embedded default data set: synthetic biased actions (SPEC 5).

Real h264 videos of a rimmed sprite (the "actor") whose MOTION is the class, over a procedural
background (the "scene"). Each known class has its own scene type; in train/val/test the scene
matches the class with probability `bias`, in test_shifted it is independent of the class, and each
unknown class borrows a known class's scene with probability `bias`. A scene-biased model therefore
loses accuracy on test_shifted and calls unknowns known with confidence; a motion model does not.
The static-bias splits of StillMix (ICCV 2023; issue 12): `test_scuba` puts the known motions on
held-out scene types that no other split ever draws (new textures and tints), and `test_scufo`
repeats one frame of each `test_scuba` clip for the clip's length (appearance without motion; same
video id as its SCUBA clip, its pairing key). Contrast accuracy is right on SCUBA and wrong on its
SCUFO clip (`dear_ray.metrics.static_bias`, docs/static_bias.md).

Layout written under ``out_dir``::

    videos/<class>/<video_id>.mp4       h264, yuv420p, T frames S x S (video_id = file stem, unique)
    videos_scufo/<class>/<video_id>.mp4 test_scufo: lossless h264, T copies of one decoded frame of
                                        the test_scuba clip with the same video id
    classes.txt, unknown_classes.txt    one class name a line (line i = label i)
    train.txt val.txt test.txt test_shifted.txt unknown.txt test_scuba.txt test_scufo.txt
                                        MMAction2 lists: ``videos/<class>/<id>.mp4 <0-based label>``
                                        (unknown.txt labels: the unknown class index 0..U-1;
                                        test_scufo.txt line i: the still of test_scuba.txt line i)
    scenes.txt                          the P = K scene type names (held-out ones: manifest.json)
    videos.csv                          truth per video: split, class, label, scene, still_frame
    scene_labels.npy / .parquet         noisy soft scene pseudo-labels (SDN layout / plain parquet)
    detections.npy / .parquet           per-frame actor boxes as SDN "human detections" (neither
                                        covers test_scuba / test_scufo: SDN trains on them only)
    manifest.json                       parameters, seed, counts, sha256 of every file (written last)

Defaults (issue 11) and how they were chosen. Measured with the demo's model and budget unless
noted (jobs/sweeps/demo.yaml: r3d18_tiny with 16 stem channels, all 16 frames, flip off, AdamW
3e-3 cosine, batch 16, 12 epochs; softmax head; the in-process training loop on 1 CPU thread shared
with other jobs, so the seconds are inflated 1.5-3x; seed 0, one run each: expect several points of
seed noise). Control = bias 0.1 (= 1/K: the scene carries no class information); AUROC = MSP, test
vs unknown. "old" = the previous defaults (64x64, contrast 0.15, radius 9, speed 3, rim 1.5, one
palette a scene, rotation rim speed 1x, orbit radius 0.18-0.28 S).

| data | train videos x epochs, sampling, crop | test | test_shifted | AUROC | train s |
|---|---|---|---|---|---|
| control, old | 600 x 12, 16x1, 56 (64 px) | 0.815 | 0.815 | 0.81 | 158 |
| control, old | 600 x 12, 8x2, 56 | 0.435 | 0.43 | 0.54 | 271 |
| control, radius 12, speed 4 | 600 x 12, 8x2, 56 | 0.485 | 0.515 | 0.69 | 221 |
| control, radius 12, speed 4 | 600 x 12, 16x1, 56 | 0.745 | 0.71 | 0.79 | 215 |
| control, same at 40 px | 600 x 12, 16x1, 32 (40 px) | 0.635 | 0.60 | 0.71 | 102 |
| control, contrast 0.08 | 600 x 12, 16x1, 56 | 0.875 | 0.87 | 0.85 | 179 |
| control, speed 2.5, radius 10, rim 2 | 600 x 12, 16x1, 56 | 0.91 | 0.865 | 0.85 | 174 |
| control, both + rotation 2x | 400 x 10, 16x1, 56 | 0.805 | 0.785 | 0.84 | 174 |
| bias 0.9, same | 400 x 10, 16x1, 56 | 0.87 | 0.345 | 0.76 | 170 |
| control, same, batch 8 | 400 x 10, 16x1, 56 | 0.735 | 0.73 | 0.71 | 108 |
| control, + orbit 0.12-0.2 S, batch 8 | 400 x 10, 16x1, 56 | 0.77 | 0.775 | 0.72 | 130 |
| control, contrast 0.05, speed 3, batch 8 | 400 x 10, 16x1, 56 | 0.735 | 0.71 | 0.79 | 131 |
| control, same, lr 6e-3 | 400 x 10, 16x1, 56 | 0.74 | 0.715 | 0.76 | 126 |
| control, defaults at 32 px | 600 x 12, 16x1, 32 | 0.80 | 0.805 | 0.74 | 206 |
| control, defaults but one palette a scene | 600 x 12, 16x1, 40 | 0.92 | 0.845 | 0.84 | 228 |
| bias 0.9, defaults but one palette a scene | 600 x 12, 16x1, 40 | 0.90 | 0.17 | 0.77 | 370 |
| bias 0.9, defaults but 2 palettes | 600 x 12, 16x1, 40 | 0.925 | 0.675 | 0.74 | 387 |
| bias 0.9, defaults but 1 palette | 600 x 12, 16x1, 40 | 0.98 | 0.865 | 0.85 | 389 |
| control, defaults but 2 palettes | 600 x 12, 16x1, 40 | 0.935 | 0.89 | 0.79 | 389 |
| bias 0.9, defaults but 5 palettes | 600 x 12, 16x1, 40 | 0.705 | 0.135 | 0.60 | 222 |
| control, defaults but 5 palettes | 600 x 12, 16x1, 40 | 0.94 | 0.87 | 0.79 | 225 |
| **bias 0.9, defaults (3 palettes)** | 600 x 12, 16x1, 40 | 0.96 | 0.535 | 0.71 | 221 |
| **control, defaults (3 palettes)** | 600 x 12, 16x1, 40 | 0.91 | 0.87 | 0.797 | 226 |

What mattered: all 16 frames (8 frames at interval 2 halved the accuracy: the stem and pool keep
more time), an actor that stands out (background contrast 0.08, rim 2), a speed that does not
wrap translations round the frame in 16 frames (speed 4 did), and enough steps (~7000 clips; 4000
left the direction of rotate/orbit at chance). The weakest pair is rotate_cw vs rotate_ccw (the
model finds "rotation" but often not its direction). At 40x40 a training step costs about 0.4 of
one at 56x56 (16-frame clip, forward + backward). Palettes decide how much the biased model leans
on the scene: with one palette a scene type it learns the tint and little motion (84% of its
test_shifted predictions were the scene's class; 17% top-1), with one palette for all it ignores
the scene (86.5%); 2 palettes gave 67.5%, 5 palettes 13.5% with test 70% (tint narrows to two
scene types and the model was stuck between them, learning no motion in 12 epochs), so the
response is not monotone. 3 palettes (the default) meets issue 11's bounds but one, by a hair:
biased 96% test / 53.5% test_shifted (bounds >= 85%, 20-60%), control 87% test_shifted (>= 85%)
with MSP AUROC 0.797 (bound 0.80; 0.805 against test_shifted). One seed each: confirm with
jobs/sweeps/demo_seeds.yaml.

Version 1.2 (issue 12) appends test_scuba and test_scufo (n/6 = 10 clips a class each by default);
appending them changed no other split's plan, lists or rendered frames (the streams are keyed by
the split's position in `SPLITS`), so the measurements above still describe the known splits. 1.2
also moved `spiral` out of the unknown motions (`motions.MOTIONS`), and encodes with x264's C code
(`encode.X264_DETERMINISM`): the video bytes are now reproducible (they were not: 1-10% of the
encodes of the same frames differed), and about a quarter of the videos decode a little
differently from 1.1's (27 of 37 byte-identical in a small copy, the rest 0.02-2.3 grey levels
apart on average).

With 1.2 the demo itself (jobs/sweeps/demo.yaml through Ray, seed 0, three runs with identical
numbers): biased softmax 95.5% test / 51.5% test_shifted / 54% test_scuba / 12% test_scufo,
contrast accuracy 42%; control 91% test / 87% test_shifted / 92% test_scuba, contrast 82%, MSP
AUROC 0.844 [0.801, 0.881] (with `spiral` among the unknowns the same control model scored 0.798;
`spiral` alone 0.625).
"""

from __future__ import annotations

from collections.abc import Mapping
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
from dear_ray.data.synth.motions import MOTIONS, SHAPES
from dear_ray.data.synth.scenes import HELD_OUT_PATTERNS, PATTERNS
from dear_ray.data.synth.summary import check_bias, summarize_dataset, verify_checksums


def generate_dataset(
    out_dir: str | Path,
    *,
    seed: int = 0,
    known_classes: int = 10,
    unknown_classes: int = 6,
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
    """Generate the synthetic biased-actions data set (SPEC 5) into `out_dir`.

    Args:
        out_dir: output folder; created if needed. A previous synthetic data set there is replaced
            (its ``videos/`` folder is deleted); a ``videos/`` folder of anything else is refused.
        seed: the data set's seed (>= 0); same seed and parameters, same bytes of every list and label.
        known_classes: K, the first K motions of `MOTIONS` (also the number of scene types P).
        unknown_classes: U, the next U motions.
        videos_per_class: training videos per known class; by default val and test_scuba get
            n/6, test, test_shifted and unknown n/3 per class (at least 1); test_scufo one clip
            per test_scuba clip.
        frames: T, frames per video (>= 4).
        size: frame side S in pixels (even, >= 32); actor radius, rim, speed and textures scale
            with S/64. (The decord build in use fails on frames 48 or 72 pixels wide.)
        bias: P(scene = the class's scene) in train/val/test, and P(scene = the paired scene) for
            unknown classes; 1/K means no bias. Exactly round(bias * n) videos per class match.
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
    from dear_ray.data.synth.generate import generate

    params = SynthParams(
        seed=seed, known_classes=known_classes, unknown_classes=unknown_classes,
        videos_per_class=videos_per_class, frames=frames, size=size, bias=bias, contrast=contrast,
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
