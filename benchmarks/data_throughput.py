"""Clips per second of the video data path, against baselines measured in the same run.

Writes a few dozen 320x240 h264 videos (~64 frames) with PyAV into a temporary folder, then times,
single process and one torch thread:

- ``VideoDataset``: open + I3D train sampling (32 frames, interval 2) + decord ``get_batch`` + the
  ``random_resized`` train preset (short side 256, 224 crop, flip, normalise);
- ``transform only``: the same preset on frames decoded beforehand;
- ``decord get_batch``: open + ``get_batch`` on exactly the same frame indices (the floor for
  decoding);
- ``PyAV whole video``: decode every frame of the video to RGB (what reading whole videos costs).

Run: ``.venv/bin/python benchmarks/data_throughput.py [--videos 24] [--rounds 2]``.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import av
import numpy as np
import torch

from dear_ray.data import (
    SampleFrames,
    VideoDataset,
    VideoRecord,
    build_train_transform,
    open_video,
)
from dear_ray.data.decode import get_frames


def write_videos(folder: Path, count: int, num_frames: int, width: int = 320, height: int = 240) -> list[Path]:
    """Smoothly moving coloured gradients with a square, h264 yuv420p, 25 fps."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    paths = []
    for v in range(count):
        path = folder / f"video_{v:03d}.mp4"
        with av.open(str(path), "w") as container:
            stream = container.add_stream("libx264", rate=25)
            stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
            for i in range(num_frames):
                img = np.stack(
                    [
                        127 + 120 * np.sin((x + 3 * i + 7 * v) / 40),
                        127 + 120 * np.cos((y - 2 * i) / 30),
                        (x + y + 5 * i) % 256,
                    ],
                    axis=-1,
                ).astype(np.uint8)
                r, c = (20 + 2 * i) % (height - 40), (30 + 3 * i + v) % (width - 40)
                img[r : r + 40, c : c + 40] = 255
                for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                    container.mux(packet)
            for packet in stream.encode():
                container.mux(packet)
        paths.append(path)
    return paths


def timed(fn, n_items: int) -> float:
    start = time.perf_counter()
    fn()
    return n_items / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=24)
    parser.add_argument("--frames", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=2, help="passes over the videos per method")
    args = parser.parse_args()
    torch.set_num_threads(1)

    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        paths = write_videos(Path(tmp), args.videos, args.frames)
        print(f"wrote {len(paths)} videos 320x240 x {args.frames} frames in {time.perf_counter() - t0:.1f} s")
        records = [VideoRecord(p, 0, p.stem, None, i + 1) for i, p in enumerate(paths)]
        sampler = SampleFrames(32, 2, 1)
        transform = build_train_transform(224, 256, kind="random_resized")
        ds = VideoDataset(records, sampler, transform)
        n = len(ds) * args.rounds

        # the frame indices each (epoch, item) of the dataset reads, for the decord baseline
        plans = []
        for epoch in range(args.rounds):
            ds.set_epoch(epoch)
            for i, rec in enumerate(records):
                plans.append((rec.path, sampler(len(open_video(rec.path)), ds.item_rng(i))))

        def run_dataset():
            for epoch in range(args.rounds):
                ds.set_epoch(epoch)
                for i in range(len(ds)):
                    item = ds[i]
                    assert item["clip"].shape == (3, 32, 224, 224)

        def run_decord():
            for path, idx in plans:
                get_frames(open_video(path), idx, path=path)

        decoded = [get_frames(open_video(p), idx, path=p) for p, idx in plans[: len(records)]]

        def run_transform():
            rng = np.random.default_rng(0)
            for _ in range(args.rounds):
                for frames in decoded:
                    transform(frames, rng)

        jitter = build_train_transform(224, 256, kind="random_resized", color_jitter=True)

        def run_transform_jitter():
            rng = np.random.default_rng(0)
            for _ in range(args.rounds):
                for frames in decoded:
                    jitter(frames, rng)

        def run_pyav():
            for _ in range(args.rounds):
                for p in paths:
                    with av.open(str(p)) as container:
                        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
                    np.stack(frames)

        run_decord()  # warm the page cache and decoder libraries
        results = {
            "decord get_batch (same frames)": timed(run_decord, n),
            "VideoDataset (decode+sample+transform)": timed(run_dataset, n),
            "transform only (pre-decoded)": timed(run_transform, n),
            "transform + ColorJitter (TPN, pre-decoded)": timed(run_transform_jitter, n),
            "PyAV whole-video decode": timed(run_pyav, n),
        }

    base = results["decord get_batch (same frames)"]
    print(f"\n{n} clips per method, I3D sampling 32x2, 224 crop, 1 process, 1 torch thread\n")
    print(f"{'method':42s} {'clips/s':>9s} {'vs decord':>10s}")
    for name, rate in results.items():
        print(f"{name:42s} {rate:9.2f} {rate / base:9.2f}x")


if __name__ == "__main__":
    main()
