"""The generator: parameters, the per-video plan, rendering + encoding workers (SPEC 5).

Reproducibility: the plan (which scene each video gets) comes from streams keyed by
``(seed, split, class)``, and every video's pixels, boxes and pseudo-label from its own stream keyed
by ``(seed, split, class, index)``. Nothing depends on the worker count or on the order in which
workers finish, so the same seed gives byte-identical lists, labels, boxes and scene labels.
"""

from __future__ import annotations

import hashlib
import multiprocessing
import shutil
import time
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path

import av
import numpy as np
from tqdm import tqdm

from dear_ray.data.synth.motions import MOTIONS, actor_boxes, render_actor, sample_actor, trajectory
from dear_ray.data.synth.scenes import render_scene

GENERATOR = "dear_ray.data.synth"
GENERATOR_VERSION = "1.1"  # 1.1: actor/palette knobs, 2x rotation, tighter orbits (issue 11)
SPLITS: tuple[str, ...] = ("train", "val", "test", "test_shifted", "unknown")
KNOWN_SPLITS: tuple[str, ...] = SPLITS[:4]
IN_PROGRESS = ".synth_in_progress"  # marker file of a generation under way (or interrupted)
MIN_SIZE = 32
MIN_FRAMES = 4
# stream tags: the first entropy word after the seed, so plan and video streams never coincide
_VIDEO_STREAM, _PLAN_STREAM, _PAIRING_STREAM = 0, 1, 2


@dataclass(frozen=True)
class SynthParams:
    """Validated generator parameters (see `generate_dataset` for their meaning)."""

    seed: int = 0
    known_classes: int = 10
    unknown_classes: int = 6
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

        for name in ("seed", "known_classes", "unknown_classes", "videos_per_class", "frames", "size",
                     "fps", "crf"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
                fail(name, value, "an integer")
        if self.seed < 0:
            fail("seed", self.seed, "an integer >= 0")
        if self.known_classes < 2:
            fail("known_classes", self.known_classes, "at least 2")
        if self.unknown_classes < 0:
            fail("unknown_classes", self.unknown_classes, "an integer >= 0")
        if self.known_classes + self.unknown_classes > len(MOTIONS):
            fail("known_classes + unknown_classes", self.known_classes + self.unknown_classes,
                 f"at most {len(MOTIONS)}, the number of motion classes ({', '.join(MOTIONS)})")
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
                                            "(>= known_classes: no sharing)")
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
        if self.counts()["train"] < 1:
            fail("split_sizes['train']", 0, "at least 1 training video per class")

    def counts(self) -> dict[str, int]:
        """Videos per class in each split: val = n/6, test = test_shifted = unknown = n/3 by default."""
        n = int(self.videos_per_class)
        third = max(1, round(n / 3))
        out = {"train": n, "val": max(1, round(n / 6)), "test": third, "test_shifted": third,
               "unknown": third}
        out.update({k: int(v) for k, v in self.split_sizes.items()})
        return out

    def class_names(self) -> tuple[list[str], list[str]]:
        """(known class names, unknown class names): the first K motions, then the next U."""
        k, u = self.known_classes, self.unknown_classes
        return list(MOTIONS[:k]), list(MOTIONS[k:k + u])

    def to_dict(self) -> dict:
        out = asdict(self)
        out["split_sizes"] = self.counts()
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
        video_id: file stem, unique in the data set, e.g. ``move_left_00007``.
        scene: the scene type drawn as background (0-based, < known_classes).
    """

    split: str
    class_name: str
    motion_index: int
    label: int
    index: int
    video_id: str
    scene: int

    @property
    def rel_path(self) -> str:
        return f"videos/{self.class_name}/{self.video_id}.mp4"


@dataclass(frozen=True)
class VideoResult:
    """What a worker returns: the actor's boxes, the scene pseudo-label and the file's checksum.

    Attributes:
        video_id: as in the task.
        boxes: one float32 (N_t, 5) array ``x1, y1, x2, y2, score`` per frame (frame t+1 is index t).
        probs: float32 (P,) soft scene pseudo-label.
        pred_cls: its argmax.
        sha256: checksum of the encoded mp4.
    """

    video_id: str
    boxes: list[np.ndarray]
    probs: np.ndarray
    pred_cls: int
    sha256: str


def _stream(*key: int) -> np.random.Generator:
    return np.random.default_rng([int(k) for k in key])


def unknown_scene_pairs(params: SynthParams) -> list[int]:
    """The known scene each unknown class is paired with (distinct scenes while U <= K)."""
    rng = _stream(params.seed, _PAIRING_STREAM)
    k, u = params.known_classes, params.unknown_classes
    if u <= k:
        return [int(s) for s in rng.permutation(k)[:u]]
    return [int(s) for s in rng.integers(0, k, u)]


def _biased_scenes(rng: np.random.Generator, n: int, own: int, k: int, bias: float) -> np.ndarray:
    """Exactly round(bias * n) videos get scene `own`, the rest a uniform other scene."""
    matched = rng.permutation(n) < round(bias * n)
    others = rng.integers(0, k - 1, n)
    others = others + (others >= own)  # skip `own`
    return np.where(matched, own, others)


def plan_videos(params: SynthParams) -> list[VideoTask]:
    """Every video of the data set, ordered by split, class, index; with its scene drawn.

    train/val/test: the class's own scene (scene i for known class i) for exactly round(bias * n)
    videos per class, a uniformly drawn other scene otherwise. test_shifted: scenes balanced over all
    K types in random order, independent of the class. unknown: the class's paired known scene
    (`unknown_scene_pairs`) for round(bias * n) videos, another one otherwise.
    """
    known, unknown = params.class_names()
    counts = params.counts()
    k = params.known_classes
    pairs = unknown_scene_pairs(params)
    first_index = {name: 0 for name in known + unknown}
    tasks: list[VideoTask] = []
    for split_id, split in enumerate(SPLITS):
        names = unknown if split == "unknown" else known
        n = counts[split]
        for label, name in enumerate(names):
            motion = MOTIONS.index(name)
            rng = _stream(params.seed, _PLAN_STREAM, split_id, motion)
            if split == "test_shifted":
                scenes = rng.permutation(np.resize(rng.permutation(k), n))
            else:
                own = pairs[label] if split == "unknown" else label
                scenes = _biased_scenes(rng, n, own, k, params.bias)
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

    Returns:
        (frames uint8 (T, S, S, 3), boxes: list of float32 (N_t, 5) per frame, probs float32 (P,),
        pred_cls int).
    """
    rng = _stream(params.seed, _VIDEO_STREAM, SPLITS.index(task.split), task.motion_index, task.index)
    actor = sample_actor(rng, params.size, radius=params.actor_radius, speed=params.actor_speed,
                         rim=params.rim)
    traj = trajectory(task.class_name, actor, rng, frames=params.frames, size=params.size)
    background = render_scene(task.scene, rng, params.size, contrast=params.contrast,
                              palettes=params.palettes)
    frames = render_actor(background, actor, traj)
    boxes = []
    for xyxy in actor_boxes(actor, traj, params.size):
        score = np.clip(0.9 + 0.03 * rng.standard_normal(len(xyxy)), 0.5, 0.99).astype(np.float32)
        boxes.append(np.concatenate([xyxy, score[:, None]], axis=1).astype(np.float32))
    probs, pred = _pseudo_label(task.scene, params.known_classes, params.scene_label_noise, rng)
    return frames, boxes, probs, pred


def encode_mp4(path: Path, frames: np.ndarray, *, fps: int = 25, crf: int = 18) -> None:
    """Write uint8 RGB frames (T, H, W, 3) as h264/yuv420p mp4 (one encoder thread: reproducible)."""
    with av.open(str(path), "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.height, stream.width = frames.shape[1:3]
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": str(crf)}
        stream.codec_context.thread_count = 1
        for img in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def sha256_file(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _make_video(task: VideoTask, params: SynthParams, root: Path) -> VideoResult:
    frames, boxes, probs, pred = render_video(task, params)
    path = root / task.rel_path
    encode_mp4(path, frames, fps=params.fps, crf=params.crf)
    return VideoResult(task.video_id, boxes, probs, pred, sha256_file(path))


def _prepare_output(root: Path) -> None:
    """Remove a previous synthetic data set's videos and manifest; refuse to touch anything else.

    A data set of this generator is recognised by its manifest (complete) or by the `IN_PROGRESS`
    marker written before the first video (an interrupted run), so an interrupted generation can be
    started again in the same folder.
    """
    root.mkdir(parents=True, exist_ok=True)
    manifest = root / "manifest.json"
    marker = root / IN_PROGRESS
    videos = root / "videos"
    if videos.exists():
        if not manifest.is_file() and not marker.is_file() and any(videos.iterdir()):
            raise FileExistsError(f"{videos} exists but {manifest} does not: not a synthetic data set "
                                  "written by this generator; choose an empty output folder")
        shutil.rmtree(videos)
    manifest.unlink(missing_ok=True)  # written last: its presence means the data set is complete
    marker.write_text(f"{GENERATOR} is writing this folder; removed when manifest.json is written\n",
                      encoding="utf-8")


def run_videos(tasks: list[VideoTask], params: SynthParams, root: Path, *, workers: int,
               progress: bool) -> list[VideoResult]:
    """Render and encode every task (in `workers` processes), results in task order."""
    for name in sorted({t.class_name for t in tasks}):
        (root / "videos" / name).mkdir(parents=True, exist_ok=True)
    work = partial(_make_video, params=params, root=root)
    bar = tqdm(total=len(tasks), desc="synthetic videos", unit="video", disable=not progress)
    results: list[VideoResult] = []
    try:
        if workers <= 1:
            for task in tasks:
                results.append(work(task))
                bar.update()
        else:
            # spawn: safe when the caller already runs torch/OpenMP threads (fork could deadlock)
            ctx = multiprocessing.get_context("spawn")
            with ctx.Pool(workers) as pool:
                for result in pool.imap(work, tasks, chunksize=8):
                    results.append(result)
                    bar.update()
    finally:
        bar.close()
    return results


def generate(params: SynthParams, out_dir: Path, *, workers: int, progress: bool) -> dict:
    """Plan, render, encode and write everything; returns the manifest (see `generate_dataset`)."""
    from dear_ray.data.synth.files import write_dataset_files

    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"synthetic data set: workers={workers!r} is invalid; expected an integer >= 1")
    root = Path(out_dir)
    start = time.perf_counter()
    _prepare_output(root)
    tasks = plan_videos(params)
    results = run_videos(tasks, params, root, workers=workers, progress=progress)
    manifest = write_dataset_files(root, params, tasks, results, pairs=unknown_scene_pairs(params))
    (root / IN_PROGRESS).unlink(missing_ok=True)
    if progress:
        print(f"synthetic data set: {len(tasks)} videos in {root} ({time.perf_counter() - start:.1f} s)")
    return manifest
