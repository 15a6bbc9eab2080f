"""The generator: parameters, the per-video plan and rendering (`dear_ray.data.synth.build` encodes
and writes).

Reproducibility: the plan (which scene each video gets, which frame a `test_scufo` clip repeats)
comes from streams keyed by ``(seed, split, class)``, and every video's pixels, boxes and
pseudo-label from its own stream keyed by ``(seed, split, class, index)``. Nothing depends on the
worker count or on the order in which workers finish, so the same seed gives byte-identical lists,
labels, boxes and scene labels. Splits are appended to `SPLITS` (their index keys the streams), so
adding `test_scuba` / `test_scufo` (1.2) changed no other split's plan or frames. The videos are
encoded reproducibly (`dear_ray.data.synth.encode`), so their bytes are the same too (given the
PyAV / libx264 build) and do not depend on the worker count.

Static-bias splits (StillMix, ICCV 2023, and its `tools/compare_SCUBA_SCUFO_results.py`):
`test_scuba` shows the known motions over held-out scene types (`scenes.HELD_OUT_PATTERNS`, indices
K.., never drawn by another split), balanced over those types; `test_scufo` holds, for each
`test_scuba` clip, ONE of its frames repeated for the clip's length (appearance without motion).
The frame is drawn uniformly from the clip's T frames (StillMix's SCUFO samples one frame of the
SCUBA clip at random: its `TemporalSelect` test blending, mmaction/datasets/blending_utils.py), it
is the SCUBA file's DECODED frame, and the SCUFO file is encoded losslessly, so all its decoded
frames are identical and equal that frame of the SCUBA clip as a model sees it. A `test_scufo` clip
has its `test_scuba` clip's video id (StillMix evaluates SCUFO on SCUBA's own list), which is how
contrast accuracy pairs them; its file lies under ``videos_scufo/``.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from dear_ray.data.synth.motions import (
    MOTIONS,
    VAL_UNKNOWN_MOTIONS,
    actor_boxes,
    render_actor,
    sample_actor,
    trajectory,
)
from dear_ray.data.synth.scenes import HELD_OUT_PATTERNS, render_scene
from dear_ray.splits import KNOWN_SPLITS, STATIC_BIAS_SPLITS, VAL_UNKNOWN_SPLIT

GENERATOR = "dear_ray.data.synth"
# 1.1: actor/palette knobs, 2x rotation, tighter orbits; 1.2: test_scuba / test_scufo; 1.3: classes
# by name, more scene types than classes, the pretraining motion families; 1.4: val_unknown
GENERATOR_VERSION = "1.4"
# every split the generator writes, in the order whose index keys the random streams
SPLITS: tuple[str, ...] = ("train", "val", "test", "test_shifted", "unknown", *STATIC_BIAS_SPLITS,
                           VAL_UNKNOWN_SPLIT)
SCUFO_DIR = "videos_scufo"  # test_scufo files: same ids as their test_scuba clips, another folder
VIDEO_DIRS: tuple[str, ...] = ("videos", SCUFO_DIR)
IN_PROGRESS = ".synth_in_progress"  # marker file of a generation under way (or interrupted)
MIN_SIZE = 32
MIN_FRAMES = 4
# stream tags: the first entropy word after the seed, so plan and video streams never coincide
_VIDEO_STREAM, _PLAN_STREAM, _PAIRING_STREAM, _VAL_PAIRING_STREAM = 0, 1, 2, 3


@dataclass(frozen=True)
class SynthParams:
    """Validated generator parameters (see `generate_dataset` for their meaning)."""

    seed: int = 0
    known_classes: int | None = None
    unknown_classes: int | None = None
    classes: tuple[str, ...] | None = None
    unknown_motions: tuple[str, ...] | None = None
    val_unknown_motions: tuple[str, ...] | None = None
    scene_types: int | None = None
    videos_per_class: int = 60
    frames: int = 16
    size: int = 40
    bias: float = 0.9
    contrast: float = 0.08
    palettes: int | None = 3
    actor_radius: float = 10.0
    actor_speed: float = 2.5
    rim: float = 2.0
    scene_label_noise: float = 0.1
    fps: int = 25
    crf: int = 18
    split_sizes: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        def fail(name: str, value, expected: str) -> None:
            raise ValueError(f"synthetic data set: {name}={value!r} is invalid; expected {expected}")

        self._resolve_classes(fail)
        for name in ("seed", "scene_types", "videos_per_class", "frames", "size", "fps", "crf"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
                fail(name, value, "an integer")
        if self.seed < 0:
            fail("seed", self.seed, "an integer >= 0")
        if self.scene_types < self.known_classes:
            fail("scene_types", self.scene_types, f"at least known_classes ({self.known_classes}): "
                                                  "known class i has scene type i as its own")
        if self.videos_per_class < 1:
            fail("videos_per_class", self.videos_per_class, "at least 1")
        if self.frames < MIN_FRAMES:
            fail("frames", self.frames, f"at least {MIN_FRAMES}")
        if self.size < MIN_SIZE or self.size % 2:
            fail("size", self.size, f"an even number of pixels >= {MIN_SIZE} (yuv420p needs even sides; "
                                    "smaller frames leave the actor a few pixels wide)")
        if not 0.0 <= self.bias <= 1.0:
            fail("bias", self.bias, "a probability in [0, 1]")
        if not 0.0 < self.contrast <= 1.0:
            fail("contrast", self.contrast, "a blend factor in (0, 1]")
        if self.palettes is not None and (isinstance(self.palettes, bool)
                                          or not isinstance(self.palettes, (int, np.integer))
                                          or self.palettes < 1):
            fail("palettes", self.palettes, "None (one palette a scene type) or an integer >= 1 "
                                            "(>= scene_types: no sharing)")
        for name, lo, hi in (("actor_radius", 2.0, 24.0), ("actor_speed", 0.0, 16.0), ("rim", 0.0, 6.0)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float, np.number)) \
                    or not lo < value <= hi:
                fail(name, value, f"a number of pixels at 64x64 in ({lo:g}, {hi:g}]")
        if not 0.0 <= self.scene_label_noise <= 1.0:
            fail("scene_label_noise", self.scene_label_noise, "a probability in [0, 1]")
        if not 1 <= self.fps <= 240:
            fail("fps", self.fps, "1..240")
        if not 0 <= self.crf <= 51:
            fail("crf", self.crf, "an x264 CRF in 0..51")
        for split, n in self.split_sizes.items():
            if split not in SPLITS:
                fail("split_sizes", split, f"a split name among {list(SPLITS)}")
            if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
                fail(f"split_sizes[{split!r}]", n, "an integer >= 0")
        counts = self.counts()
        if counts["train"] < 1:
            fail("split_sizes['train']", 0, "at least 1 training video per class")
        if counts["test_scufo"] not in (0, counts["test_scuba"]):
            fail("split_sizes['test_scufo']", counts["test_scufo"],
                 f"0 or the test_scuba size {counts['test_scuba']} (one SCUFO clip per SCUBA clip)")

    def _resolve_classes(self, fail) -> None:
        """Fill in the class names and counts (frozen: set once, here): named classes fix their
        counts; otherwise the first K motions are known and the next U unknown (10 and 6)."""
        def names(field_name: str, value) -> tuple[str, ...]:
            if isinstance(value, str) or not all(isinstance(m, str) for m in value):
                fail(field_name, value, "a list of motion names")
            bad = [m for m in value if m not in MOTIONS]
            if bad or len(set(value)) != len(value):
                fail(field_name, list(value), f"distinct motion names among {', '.join(MOTIONS)}")
            return tuple(value)

        for name in ("known_classes", "unknown_classes"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, np.integer))):
                fail(name, value, "an integer")
        named = self.classes is not None
        known = names("classes", self.classes) if named else None
        if named and self.known_classes not in (None, len(known)):
            fail("known_classes", self.known_classes, f"{len(known)}, the number of `classes`, or unset")
        k = len(known) if named else (10 if self.known_classes is None else int(self.known_classes))
        if k < 2:
            fail("known_classes", k, "at least 2")
        if self.unknown_motions is not None:
            unknown = names("unknown_motions", self.unknown_motions)
            if self.unknown_classes not in (None, len(unknown)):
                fail("unknown_classes", self.unknown_classes,
                     f"{len(unknown)}, the number of `unknown_motions`, or unset")
        else:
            u = (0 if named else 6) if self.unknown_classes is None else int(self.unknown_classes)
            if u < 0:
                fail("unknown_classes", u, "an integer >= 0")
            if named and u:
                fail("unknown_classes", u, "0 with named `classes` (name the unknown ones in "
                                           "`unknown_motions`)")
            if k + u > len(MOTIONS):
                fail("known_classes + unknown_classes", k + u,
                     f"at most {len(MOTIONS)}, the number of motion classes ({', '.join(MOTIONS)})")
            unknown = tuple(MOTIONS[k:k + u])
        known = known or tuple(MOTIONS[:k])
        if set(known) & set(unknown):
            fail("unknown_motions", list(unknown),
                 f"no motion of `classes` ({sorted(set(known) & set(unknown))})")
        if self.val_unknown_motions is not None:
            val_unknown = names("val_unknown_motions", self.val_unknown_motions)
            if set(val_unknown) & (set(known) | set(unknown)):
                fail("val_unknown_motions", list(val_unknown),
                     f"no motion of `classes` or `unknown_motions` "
                     f"({sorted(set(val_unknown) & (set(known) | set(unknown)))})")
        else:  # named classes (a pretraining set) have none unless named
            val_unknown = () if named else tuple(m for m in VAL_UNKNOWN_MOTIONS
                                                 if m not in known and m not in unknown)
        for name, value in (("classes", known), ("unknown_motions", unknown),
                            ("val_unknown_motions", val_unknown), ("known_classes", k),
                            ("unknown_classes", len(unknown)),
                            ("scene_types", k if self.scene_types is None else self.scene_types)):
            object.__setattr__(self, name, value)

    def counts(self) -> dict[str, int]:
        """Videos per class in each split: val = test_scuba = n/6, test = test_shifted = unknown =
        val_unknown = n/3 by default; test_scufo = test_scuba (one clip per SCUBA clip; 0 leaves it
        out)."""
        n = int(self.videos_per_class)
        sixth, third = max(1, round(n / 6)), max(1, round(n / 3))
        out = {"train": n, "val": sixth, "test": third, "test_shifted": third, "unknown": third,
               "test_scuba": sixth, VAL_UNKNOWN_SPLIT: third}
        out.update({k: int(v) for k, v in self.split_sizes.items() if k != "test_scufo"})
        out["test_scufo"] = int(self.split_sizes.get("test_scufo", out["test_scuba"]))
        return out

    def class_names(self) -> tuple[list[str], list[str]]:
        """(known class names, unknown class names), in label order."""
        return list(self.classes), list(self.unknown_motions)

    def to_dict(self) -> dict:
        out = asdict(self)
        out["split_sizes"] = self.counts()
        out["classes"], out["unknown_motions"] = list(self.classes), list(self.unknown_motions)
        out["val_unknown_motions"] = list(self.val_unknown_motions)
        return {k: (v.item() if isinstance(v, np.generic) else v) for k, v in out.items()}


@dataclass(frozen=True)
class VideoTask:
    """One video of the plan.

    Attributes:
        split: one of `SPLITS`.
        class_name: the motion.
        motion_index: the motion's index in `MOTIONS` (part of the random-stream key).
        label: 0-based label in its list (known: class index; unknown: unknown class index).
        index: index of the video within (split, class).
        video_id: file stem, e.g. ``move_left_00007``: unique in the data set, except that a
            test_scufo clip has its test_scuba clip's id (the pairing key).
        scene: the scene type drawn as background (0-based): < scene_types P, or P + j for
            held-out type j in test_scuba / test_scufo.
        still_frame: test_scufo only: the 0-based frame of the SCUBA clip it repeats.
    """

    split: str
    class_name: str
    motion_index: int
    label: int
    index: int
    video_id: str
    scene: int
    still_frame: int | None = None

    @property
    def rel_path(self) -> str:
        folder = SCUFO_DIR if self.split == "test_scufo" else "videos"
        return f"{folder}/{self.class_name}/{self.video_id}.mp4"

    @property
    def source_path(self) -> str:
        """The file this clip is made from: its test_scuba clip for test_scufo, else itself."""
        return f"videos/{self.class_name}/{self.video_id}.mp4"


@dataclass(frozen=True)
class VideoResult:
    """What a worker returns: the actor's boxes, the scene pseudo-label and the file's checksum.

    Attributes:
        video_id: as in the task.
        boxes: one float32 (N_t, 5) array ``x1, y1, x2, y2, score`` per frame (frame t+1 is index t).
        probs: float32 (P,) soft scene pseudo-label; (0,) for a held-out scene (no pseudo-label).
        pred_cls: its argmax; -1 without one.
        sha256: checksum of the encoded mp4.
    """

    video_id: str
    boxes: list[np.ndarray]
    probs: np.ndarray
    pred_cls: int
    sha256: str


def _stream(*key: int) -> np.random.Generator:
    return np.random.default_rng([int(k) for k in key])


def unknown_scene_pairs(params: SynthParams, *, validation: bool = False) -> list[int]:
    """The known scene each unknown class (with `validation`: each validation unknown class) is
    paired with (distinct scenes while U <= K; the two draw from separate streams)."""
    rng = _stream(params.seed, _VAL_PAIRING_STREAM if validation else _PAIRING_STREAM)
    k = params.known_classes
    u = len(params.val_unknown_motions) if validation else params.unknown_classes
    if u <= k:
        return [int(s) for s in rng.permutation(k)[:u]]
    return [int(s) for s in rng.integers(0, k, u)]


def _biased_scenes(rng: np.random.Generator, n: int, own: int, p: int, bias: float) -> np.ndarray:
    """Exactly round(bias * n) videos get scene `own`, the rest a uniform other of the P types."""
    matched = rng.permutation(n) < round(bias * n)
    others = rng.integers(0, p - 1, n)
    others = others + (others >= own)  # skip `own`
    return np.where(matched, own, others)


def plan_videos(params: SynthParams) -> list[VideoTask]:
    """Every video of the data set, ordered by split, class, index; with its scene drawn.

    train/val/test: the class's own scene (scene i for known class i) for exactly round(bias * n)
    videos per class, a uniformly drawn other of the P scene types otherwise. test_shifted: scenes
    balanced over all P types in random order, independent of the class. unknown and val_unknown:
    the class's paired known scene (`unknown_scene_pairs`) for round(bias * n) videos, another one
    otherwise.
    test_scuba: scenes balanced over the held-out types P .. P + len(HELD_OUT_PATTERNS) - 1 in
    random order (no other split draws an index >= P). test_scufo: one clip per test_scuba clip
    (same class, label, id and scene) with a uniformly drawn `still_frame` in [0, T).
    """
    known, unknown = params.class_names()
    counts = params.counts()
    p = params.scene_types
    pairs = {"unknown": unknown_scene_pairs(params),
             VAL_UNKNOWN_SPLIT: unknown_scene_pairs(params, validation=True)}
    names_of = {"unknown": unknown, VAL_UNKNOWN_SPLIT: list(params.val_unknown_motions)}
    first_index = {name: 0 for name in known + unknown + names_of[VAL_UNKNOWN_SPLIT]}
    tasks: list[VideoTask] = []
    for split_id, split in enumerate(SPLITS):
        names = names_of.get(split, known)
        n = counts[split]
        if split == "test_scufo":
            scuba = [t for t in tasks if t.split == "test_scuba"]
            for t in scuba if n else []:
                rng = _stream(params.seed, _PLAN_STREAM, split_id, t.motion_index, t.index)
                tasks.append(replace(t, split=split,
                                     still_frame=int(rng.integers(0, params.frames))))
            continue
        for label, name in enumerate(names):
            motion = MOTIONS.index(name)
            rng = _stream(params.seed, _PLAN_STREAM, split_id, motion)
            if split == "test_shifted":
                scenes = rng.permutation(np.resize(rng.permutation(p), n))
            elif split == "test_scuba":
                scenes = p + rng.permutation(np.resize(rng.permutation(len(HELD_OUT_PATTERNS)), n))
            else:
                own = pairs[split][label] if split in pairs else label
                scenes = _biased_scenes(rng, n, own, p, params.bias)
            for i in range(n):
                video_id = f"{name}_{first_index[name] + i:05d}"
                tasks.append(VideoTask(split, name, motion, label, i, video_id, int(scenes[i])))
            first_index[name] += n
    return tasks


def _pseudo_label(scene: int, num_scenes: int, noise: float, rng: np.random.Generator):
    """A soft scene distribution peaked on the true scene, or on a wrong one with prob. `noise`."""
    peak = scene
    if num_scenes > 1 and rng.random() < noise:
        peak = int(rng.integers(0, num_scenes - 1))
        peak += peak >= scene
    logits = rng.normal(0.0, 0.5, num_scenes)
    logits[peak] += rng.uniform(2.0, 4.0)
    probs = np.exp(logits - logits.max())
    probs = (probs / probs.sum()).astype(np.float32)
    return probs, int(np.argmax(probs))


def render_video(task: VideoTask, params: SynthParams):
    """The pixels, actor boxes and scene pseudo-label of one planned video (no file written).

    A test_scufo task renders its test_scuba clip (same stream); `encode_still_mp4` makes the
    still clip from that clip's file.

    Returns:
        (frames uint8 (T, S, S, 3), boxes: list of float32 (N_t, 5) per frame, probs float32 (P,),
        pred_cls int); a held-out scene (test_scuba) has no pseudo-label: probs (0,), pred_cls -1.
    """
    split = "test_scuba" if task.split == "test_scufo" else task.split
    rng = _stream(params.seed, _VIDEO_STREAM, SPLITS.index(split), task.motion_index, task.index)
    actor = sample_actor(rng, params.size, radius=params.actor_radius, speed=params.actor_speed,
                         rim=params.rim)
    traj = trajectory(task.class_name, actor, rng, frames=params.frames, size=params.size)
    background = render_scene(task.scene, rng, params.size, contrast=params.contrast,
                              palettes=params.palettes, known=params.scene_types)
    frames = render_actor(background, actor, traj)
    boxes = []
    for xyxy in actor_boxes(actor, traj, params.size):
        score = np.clip(0.9 + 0.03 * rng.standard_normal(len(xyxy)), 0.5, 0.99).astype(np.float32)
        boxes.append(np.concatenate([xyxy, score[:, None]], axis=1).astype(np.float32))
    if task.scene >= params.scene_types:  # a held-out type: none of the P pseudo-label classes
        return frames, boxes, np.zeros(0, np.float32), -1
    probs, pred = _pseudo_label(task.scene, params.scene_types, params.scene_label_noise, rng)
    return frames, boxes, probs, pred


def sha256_file(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()
