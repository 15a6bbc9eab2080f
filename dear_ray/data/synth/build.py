"""Generating a synthetic data set end to end: render and encode every planned video (in worker
processes), then write the lists, side inputs and manifest.

`generate` chains the planner and renderer (`dear_ray.data.synth.generate`) and the writers
(`dear_ray.data.synth.files`); neither of those imports this module.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import shutil
import time
from functools import partial
from pathlib import Path

import numpy as np
from tqdm import tqdm

from dear_ray.data.synth.encode import encode_mp4, encode_still_mp4
from dear_ray.data.synth.files import write_dataset_files
from dear_ray.data.synth.generate import (
    GENERATOR,
    IN_PROGRESS,
    VIDEO_DIRS,
    SynthParams,
    VideoResult,
    VideoTask,
    plan_videos,
    render_video,
    sha256_file,
    unknown_scene_pairs,
)


def _make_video(task: VideoTask, params: SynthParams, root: Path) -> VideoResult:
    path = root / task.rel_path
    if task.still_frame is not None:  # test_scufo: from its test_scuba clip's file (written first)
        encode_still_mp4(path, root / task.source_path, task.still_frame, frames=params.frames,
                         fps=params.fps)
        return VideoResult(task.video_id, [], np.zeros(0, np.float32), -1, sha256_file(path))
    frames, boxes, probs, pred = render_video(task, params)
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
    for videos in (root / name for name in VIDEO_DIRS):
        if videos.exists() and not manifest.is_file() and not marker.is_file() \
                and any(videos.iterdir()):
            raise FileExistsError(f"{videos} exists but {manifest} does not: not a synthetic data set "
                                  "written by this generator; choose an empty output folder")
    for videos in (root / name for name in VIDEO_DIRS):
        if videos.exists():
            shutil.rmtree(videos)
    manifest.unlink(missing_ok=True)  # written last: its presence means the data set is complete
    marker.write_text(f"{GENERATOR} is writing this folder; removed when manifest.json is written\n",
                      encoding="utf-8")


def run_videos(tasks: list[VideoTask], params: SynthParams, root: Path, *, workers: int,
               progress: bool) -> list[VideoResult]:
    """Render and encode every task (in `workers` processes), results in task order.

    Two passes: every clip but test_scufo, then test_scufo (made from test_scuba files)."""
    for task in tasks:
        (root / task.rel_path).parent.mkdir(parents=True, exist_ok=True)
    work = partial(_make_video, params=params, root=root)
    passes = [[i for i, t in enumerate(tasks) if t.still_frame is None],
              [i for i, t in enumerate(tasks) if t.still_frame is not None]]
    bar = tqdm(total=len(tasks), desc="synthetic videos", unit="video", disable=not progress)
    results: dict[int, VideoResult] = {}
    # spawn: safe when the caller already runs torch/OpenMP threads (fork could deadlock)
    pool = multiprocessing.get_context("spawn").Pool(workers) if workers > 1 else contextlib.nullcontext()
    try:
        with pool:
            for indices in passes:
                todo = [tasks[i] for i in indices]
                done = pool.imap(work, todo, chunksize=8) if workers > 1 else map(work, todo)
                for i, result in zip(indices, done, strict=True):
                    results[i] = result
                    bar.update()
    finally:
        bar.close()
    return [results[i] for i in range(len(tasks))]


def generate(params: SynthParams, out_dir: Path, *, workers: int, progress: bool) -> dict:
    """Plan, render, encode and write everything; returns the manifest (see `generate_dataset`)."""
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"synthetic data set: workers={workers!r} is invalid; expected an integer >= 1")
    root = Path(out_dir)
    start = time.perf_counter()
    _prepare_output(root)
    tasks = plan_videos(params)
    results = run_videos(tasks, params, root, workers=workers, progress=progress)
    manifest = write_dataset_files(root, params, tasks, results, pairs=unknown_scene_pairs(params),
                                   val_pairs=unknown_scene_pairs(params, validation=True))
    (root / IN_PROGRESS).unlink(missing_ok=True)
    if progress:
        print(f"synthetic data set: {len(tasks)} videos in {root} ({time.perf_counter() - start:.1f} s)")
    return manifest
