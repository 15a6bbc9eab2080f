"""Clips per second of the video data path, as ratios to bare decord on the same frames, one run.

Writes a few dozen 320x240 h264 videos (~64 frames) with PyAV into a temporary folder, draws the
frame indices of every (epoch, item) once (I3D train sampling: 32 frames at interval 2), then
times, in one process with one torch thread and one OpenCV thread:

- ``decord get_batch``: open + ``get_batch`` on exactly those frames (the baseline, 1.00x);
- ``torchcodec get_frames_at``: the same with torchcodec (when installed);
- ``VideoDataset <decoder>, <handover>``: open + sampling + decoding + the ``random_resized`` train
  preset (MMAction2-exact: cv2 resize of the short side to 256, random crop, cv2 resize to 224,
  flip) + float32 normalisation (``float``) or the uint8 handover (``uint8``: normalised later on
  the training device, timed here separately on the CPU);
- ``transform only``: the preset on frames decoded beforehand, float and uint8;
- ``transform + ColorJitter``: TPN's float preset;
- ``PyAV whole-video decode``: every frame of the video to RGB (what reading whole videos costs).

Clip by clip, every method runs in turn, `--rounds` times; each (method, clip) keeps its best time
and a row sums them, so every method meets the same moments of a shared machine's load. Wall time
also counts waiting for a core there, so the rows give CPU time per clip (all threads of the
process) next to wall-clock clips/s, and a ratio for each (> 1 = faster than decord).

Run: ``.venv/bin/python benchmarks/data_throughput.py [--videos 24] [--rounds 4]``.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import av
import cv2
import numpy as np
import torch

from dear_ray.data import SampleFrames, VideoDataset, VideoRecord, build_train_transform, open_video
from dear_ray.data.decode import DecoderUnavailableError, check_decoder, get_frames


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


def torchcodec_missing() -> str | None:
    """None when torchcodec decodes here, else why not (one line)."""
    try:
        check_decoder("torchcodec")
    except DecoderUnavailableError as exc:
        return (f"not available ({type(exc.__cause__).__name__}; install: the [torchcodec] extra "
                "and FFmpeg's libraries, dear_ray/data/decode.py)")
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=24)
    parser.add_argument("--frames", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=2, help="passes over the videos a round")
    parser.add_argument("--rounds", type=int, default=4, help="interleaved timing rounds a method")
    args = parser.parse_args()
    torch.set_num_threads(1)
    cv2.setNumThreads(1)  # as in DataLoader workers (dear_ray.train.data), and decord's 1 thread
    no_torchcodec = torchcodec_missing()
    decoders = ["decord"] + ([] if no_torchcodec else ["torchcodec"])

    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        paths = write_videos(Path(tmp), args.videos, args.frames)
        print(f"wrote {len(paths)} videos 320x240 x {args.frames} frames in "
              f"{time.perf_counter() - t0:.1f} s")
        records = [VideoRecord(p, 0, p.stem, None, i + 1) for i, p in enumerate(paths)]
        sampler = SampleFrames(32, 2, 1)
        datasets = {
            (dec, handover): VideoDataset(
                records, sampler, build_train_transform(224, 256, kind="random_resized",
                                                        handover=handover), decoder=dec)
            for dec in decoders for handover in ("float", "uint8")
        }
        ds = datasets["decord", "float"]
        n = len(ds) * args.epochs

        # clip j of a pass is item i = j % videos of epoch j // videos; the frame indices each
        # one reads, for the bare decoders
        plans = []
        for epoch in range(args.epochs):
            ds.set_epoch(epoch)
            for i, rec in enumerate(records):
                plans.append((rec.path, sampler(len(open_video(rec.path)), ds.item_rng(i))))

        def bare(decoder):
            def one(j):
                path, idx = plans[j]
                get_frames(open_video(path, decoder=decoder), idx, path=path)
            return one

        def item(dataset):
            def one(j):
                dataset.set_epoch(j // len(records))
                assert dataset[j % len(records)]["clip"].shape == (3, 32, 224, 224)
            return one

        # the first epoch's frames, decoded once (the second epoch transforms them again)
        decoded = [get_frames(open_video(p), idx, path=p) for p, idx in plans[: len(records)]]

        def transform_only(transform, then=None):
            def one(j):
                out = transform(decoded[j % len(decoded)], np.random.default_rng(j))
                if then is not None:
                    then(out[None])
            return one

        def pyav_whole(j):
            with av.open(str(paths[j % len(paths)])) as container:
                np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])

        uint8_t = datasets["decord", "uint8"].transform
        methods = {"decord get_batch (same frames)": bare("decord")}
        if "torchcodec" in decoders:
            methods["torchcodec get_frames_at (same frames)"] = bare("torchcodec")
        for (dec, handover), dataset in datasets.items():
            methods[f"VideoDataset {dec}, {handover} handover"] = item(dataset)
        methods.update({
            "transform only, float (pre-decoded)": transform_only(ds.transform),
            "transform only, uint8 (pre-decoded)": transform_only(uint8_t),
            "  + ClipNormalizer on CPU (the device's work)":
                transform_only(uint8_t, uint8_t.normalizer),
            "transform + ColorJitter (TPN, pre-decoded)": transform_only(
                build_train_transform(224, 256, kind="random_resized", color_jitter=True)),
            "PyAV whole-video decode": pyav_whole,
        })

        same = "n/a"
        if "torchcodec" in decoders:
            diff = max(int(np.abs(get_frames(open_video(p, decoder="torchcodec"), idx, path=p)
                                  .astype(np.int16) - get_frames(open_video(p), idx, path=p)).max())
                       for p, idx in plans)
            same = f"max |torchcodec - decord| = {diff} grey levels over all {len(plans)} clips"

        for j in range(len(plans)):  # warm the page cache, decoder libraries and allocators
            for one in methods.values():
                one(j)
        # per clip, every method in turn, `rounds` times: each (method, clip) keeps its best time,
        # so all methods meet the same moments of a shared machine's load
        wall = {k: np.full(n, np.inf) for k in methods}
        cpu = {k: np.full(n, np.inf) for k in methods}
        for _ in range(args.rounds):
            for j in range(n):
                for name, one in methods.items():
                    w, c = time.perf_counter(), time.process_time()
                    one(j)
                    wall[name][j] = min(wall[name][j], time.perf_counter() - w)
                    cpu[name][j] = min(cpu[name][j], time.process_time() - c)
        wall = {k: float(v.sum()) for k, v in wall.items()}
        cpu = {k: float(v.sum()) for k, v in cpu.items()}

    base_w, base_c = wall["decord get_batch (same frames)"], cpu["decord get_batch (same frames)"]
    print(f"\n{n} clips a method ({args.epochs} epochs of {len(paths)} videos), each clip's best "
          f"of {args.rounds} interleaved rounds; I3D sampling 32x2, random_resized 224 crop with "
          "MMAction2-exact cv2 resizes; 1 process, 1 torch thread, 1 OpenCV thread")
    print(f"torchcodec: {no_torchcodec or 'installed'}; same frames: {same}\n")
    print(f"{'method':48s} {'clips/s':>8s} {'vs decord':>9s} {'CPU ms/clip':>12s} "
          f"{'vs decord':>9s}")
    for name in methods:
        print(f"{name:48s} {n / wall[name]:8.2f} {base_w / wall[name]:8.2f}x "
              f"{1e3 * cpu[name] / n:12.2f} {base_c / cpu[name]:8.2f}x")


if __name__ == "__main__":
    main()
