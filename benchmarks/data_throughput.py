"""Clips per second of the video data path, as ratios to bare decord on the same frames, one run.

Writes a few dozen 320x240 h264 videos (~64 frames) with PyAV into a temporary folder, draws the
frame indices of every (epoch, item) once (I3D train sampling: 32 frames at interval 2), then
times, with one torch thread, one OpenCV thread and one decoder thread:

- ``decord get_batch``: ``decord.VideoReader(path, num_threads=1).get_batch(indices).asnumpy()``
  on exactly those frames, as MMAction2 0.x's ``DecordInit`` + ``DecordDecode`` (the baseline,
  1.00x);
- ``torchcodec get_frames_at``: the same with torchcodec (when installed);
- ``VideoDataset <decoder>, <handover>``: open + sampling + decoding + the ``random_resized`` train
  preset (MMAction2-exact: cv2 resize of the short side to 256, random crop, cv2 resize to 224,
  flip) + float32 normalisation (``float``) or the uint8 handover (``uint8``: normalised later on
  the training device, timed here separately on the CPU);
- ``transform only``: the preset on frames decoded beforehand, float and uint8;
- ``transform + ColorJitter``: TPN's float preset;
- ``PyAV whole-video decode``: every frame of the video to RGB (what reading whole videos costs).

Every method runs in its own process (forked from one preloaded server), as a DataLoader worker
runs only its dataset: in one shared process the methods' large allocations change each other's
malloc state, and fresh memory costs ~5 us a 4 KiB page fault here (1.2 ms a MB), which moved
single rows by up to 2x. The parent drives them clip by clip: every method in turn, `--rounds`
times; each (method, clip) keeps its best time and a row sums them, so every method meets the same
moments of a shared machine's load. Wall time also counts waiting for a core, so the rows give CPU
time per clip (the method's process, all threads) next to wall-clock clips/s, and a ratio for each
(> 1 = faster than decord). A last table splits the ``VideoDataset decord`` path into its steps
with the same functions, bare decord timed on each clip beside them in the same process (CPU ms a
clip, each step's best of the rounds).

Run: ``.venv/bin/python benchmarks/data_throughput.py [--videos 24] [--rounds 4]``.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np

BARE = "decord get_batch (same frames)"
TORCHCODEC = "torchcodec get_frames_at (same frames)"


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
    from dear_ray.data.decode import DecoderUnavailableError, check_decoder

    try:
        check_decoder("torchcodec")
    except DecoderUnavailableError as exc:
        return (f"not available ({type(exc.__cause__).__name__}; install: the [torchcodec] extra "
                "and FFmpeg's libraries, dear_ray/data/decode.py)")
    return None


@dataclass(frozen=True)
class Setup:
    """What every method's process needs: the videos and, clip by clip, the frames to read."""

    paths: list[Path]
    plans: list[tuple[Path, np.ndarray]]  # clip j: (video, frame indices) of item j % videos
    epochs: int


RETAIN = False  # --retain-freed-memory, set in each method's process


def _threads() -> None:
    import cv2
    import torch

    torch.set_num_threads(1)
    cv2.setNumThreads(1)  # as in DataLoader workers (dear_ray.train.data), and 1 decoder thread
    if RETAIN:
        from dear_ray.data.dataset import retain_freed_memory

        assert retain_freed_memory()


def _datasets(setup: Setup, decoder: str, handover: str):
    from dear_ray.data import SampleFrames, VideoDataset, VideoRecord, build_train_transform

    records = [VideoRecord(p, 0, p.stem, None, i + 1) for i, p in enumerate(setup.paths)]
    return VideoDataset(records, SampleFrames(32, 2, 1),
                        build_train_transform(224, 256, kind="random_resized", handover=handover),
                        decoder=decoder)


def _method(name: str, setup: Setup):
    """The callable ``one(j)`` that handles clip j for the method called `name`."""
    import decord
    from dear_ray.data import build_train_transform, open_video
    from dear_ray.data.decode import get_frames

    videos = len(setup.paths)
    if name == BARE:
        def one(j):
            path, idx = setup.plans[j]
            decord.VideoReader(str(path), ctx=decord.cpu(0), num_threads=1).get_batch(
                idx.tolist()).asnumpy()
        return one
    if name == TORCHCODEC:
        def one(j):
            path, idx = setup.plans[j]
            get_frames(open_video(path, decoder="torchcodec"), idx, path=path)
        return one
    if name.startswith("VideoDataset"):
        decoder, handover = name.removeprefix("VideoDataset ").removesuffix(" handover").split(", ")
        dataset = _datasets(setup, decoder, handover)

        def one(j):
            dataset.set_epoch(j // videos)
            assert dataset[j % videos]["clip"].shape == (3, 32, 224, 224)
        return one
    if name == "PyAV whole-video decode":
        def one(j):
            with av.open(str(setup.paths[j % videos])) as container:
                np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])
        return one
    # the first epoch's frames, decoded once (the second epoch transforms them again)
    decoded = [get_frames(open_video(p), idx, path=p) for p, idx in setup.plans[:videos]]
    uint8_t = build_train_transform(224, 256, kind="random_resized", handover="uint8")
    transform, then = {
        "transform only, float (pre-decoded)": (
            build_train_transform(224, 256, kind="random_resized"), None),
        "transform only, uint8 (pre-decoded)": (uint8_t, None),
        "  + ClipNormalizer on CPU (the device's work)": (uint8_t, uint8_t.normalizer),
        "transform + ColorJitter (TPN, pre-decoded)": (
            build_train_transform(224, 256, kind="random_resized", color_jitter=True), None),
    }[name]

    def one(j):
        out = transform(decoded[j % videos], np.random.default_rng(j))
        if then is not None:
            then(out[None])
    return one


def _serve(conn, name: str, setup: Setup, retain: bool) -> None:
    """A method's process: warm up on every clip, then time the clips the parent asks for."""
    global RETAIN
    RETAIN = retain
    _threads()
    one = _method(name, setup)
    for j in range(len(setup.plans)):  # warm the page cache, decoder libraries and allocators
        one(j)
    conn.send("ready")
    while (j := conn.recv()) is not None:
        w, c = time.perf_counter(), time.process_time()
        one(j)
        conn.send((time.perf_counter() - w, time.process_time() - c))


STEPS = ("open", "sample indices", "decode (get_frames)", "draw crop box",
         "resize short side 256 (rows)", "resize crop to 224", "flip + uint8 handover",
         "float handover (LUT) instead", "bare decord, same clip (1.00x)")


def _breakdown(conn, setup: Setup, rounds: int, retain: bool) -> None:
    """The `VideoDataset` decord path (`VideoDataset.__getitem__` -> `read_sampled_clip` ->
    `VideoTransform`), step by step with the same functions: CPU ms a clip, each step's best."""
    global RETAIN
    RETAIN = retain
    _threads()
    import cv2
    import torch

    from dear_ray.data import open_video
    from dear_ray.data.decode import get_frames
    from dear_ray.data.presets import _unflip_in_place
    from dear_ray.data.transforms import rescale_size, resize_frames, resize_rows

    dataset = _datasets(setup, "decord", "uint8")
    bare = _method(BARE, setup)
    _, crop, flip = dataset.transform.ops
    lut = dataset.transform.normalizer.lut()
    videos = len(setup.paths)
    best = np.full((len(setup.plans), len(STEPS)), np.inf)
    for r in range(rounds + 1):  # round 0 warms up
        for j in range(len(setup.plans)):
            dataset.set_epoch(j // videos)
            record, rng = dataset.records[j % videos], dataset.item_rng(j % videos)
            t = [time.process_time()]
            reader = open_video(record.path)
            t.append(time.process_time())
            idx = dataset.sampler(len(reader), rng)
            t.append(time.process_time())
            frames = get_frames(reader, idx, path=record.path)
            t.append(time.process_time())
            width, height = rescale_size(frames.shape[2], frames.shape[1], 256)
            top, left, h, w = crop.crop_box(height, width, rng)
            t.append(time.process_time())
            band, first = resize_rows(frames, width, height, top, top + h)
            t.append(time.process_time())
            out = resize_frames(band[:, top - first : top - first + h, left : left + w], 224, 224)
            t.append(time.process_time())
            flipped = flip(out, rng)
            owned = _unflip_in_place(flipped) if flipped.strides[2] < 0 else flipped
            torch.from_numpy(owned).permute(3, 0, 1, 2)
            t.append(time.process_time())
            planes = np.empty((3, 32 * 224, 224), np.uint8)
            for i in range(32):
                cv2.split(owned[i], [planes[0, i * 224 : (i + 1) * 224],
                                     planes[1, i * 224 : (i + 1) * 224],
                                     planes[2, i * 224 : (i + 1) * 224]])
            normed = np.empty(planes.shape, np.float32)
            for c in range(3):
                cv2.LUT(planes[c], lut[c], dst=normed[c])
            t.append(time.process_time())
            bare(j)
            t.append(time.process_time())
            if r:
                best[j] = np.minimum(best[j], np.diff(t))
    conn.send(best.mean(axis=0) * 1e3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=24)
    parser.add_argument("--frames", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=2, help="passes over the videos a round")
    parser.add_argument("--rounds", type=int, default=4, help="interleaved timing rounds a method")
    parser.add_argument("--retain-freed-memory", action="store_true",
                        help="every method's process calls dear_ray.data.dataset."
                             "retain_freed_memory() (malloc keeps freed clip buffers)")
    args = parser.parse_args()
    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload(["torch", "cv2", "decord", "dear_ray.data"])
    _threads()
    from dear_ray.data import open_video
    from dear_ray.data.decode import get_frames

    no_torchcodec = torchcodec_missing()
    decoders = ["decord"] + ([] if no_torchcodec else ["torchcodec"])

    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        paths = write_videos(Path(tmp), args.videos, args.frames)
        print(f"wrote {len(paths)} videos 320x240 x {args.frames} frames in "
              f"{time.perf_counter() - t0:.1f} s")
        # clip j of a pass is item i = j % videos of epoch j // videos; the frame indices each
        # one reads, for the bare decoders
        ds = _datasets(Setup(paths, [], args.epochs), "decord", "float")
        plans = []
        for epoch in range(args.epochs):
            ds.set_epoch(epoch)
            for i, rec in enumerate(ds.records):
                plans.append((rec.path, ds.sampler(len(open_video(rec.path)), ds.item_rng(i))))
        setup = Setup(paths, plans, args.epochs)
        n = len(plans)

        names = [BARE] + ([TORCHCODEC] if "torchcodec" in decoders else [])
        names += [f"VideoDataset {d}, {h} handover" for d in decoders for h in ("float", "uint8")]
        names += ["transform only, float (pre-decoded)", "transform only, uint8 (pre-decoded)",
                  "  + ClipNormalizer on CPU (the device's work)",
                  "transform + ColorJitter (TPN, pre-decoded)", "PyAV whole-video decode"]

        same = "n/a"
        if "torchcodec" in decoders:
            diff = max(int(np.abs(get_frames(open_video(p, decoder="torchcodec"), idx, path=p)
                                  .astype(np.int16) - get_frames(open_video(p), idx, path=p)).max())
                       for p, idx in plans)
            same = f"max |torchcodec - decord| = {diff} grey levels over all {n} clips"

        conns, procs = {}, []
        for name in names:
            parent, child = ctx.Pipe()
            procs.append(ctx.Process(target=_serve, daemon=True,
                                     args=(child, name, setup, args.retain_freed_memory)))
            procs[-1].start()
            conns[name] = parent
        for conn in conns.values():
            assert conn.recv() == "ready"
        # per clip, every method in turn, `rounds` times: each (method, clip) keeps its best time,
        # so all methods meet the same moments of a shared machine's load
        wall = {k: np.full(n, np.inf) for k in names}
        cpu = {k: np.full(n, np.inf) for k in names}
        for _ in range(args.rounds):
            for j in range(n):
                for name, conn in conns.items():
                    conn.send(j)
                    w, c = conn.recv()
                    wall[name][j] = min(wall[name][j], w)
                    cpu[name][j] = min(cpu[name][j], c)
        for conn in conns.values():
            conn.send(None)
        for proc in procs:
            proc.join()
        wall = {k: float(v.sum()) for k, v in wall.items()}
        cpu = {k: float(v.sum()) for k, v in cpu.items()}

        parent, child = ctx.Pipe()
        proc = ctx.Process(target=_breakdown, daemon=True,
                           args=(child, setup, args.rounds, args.retain_freed_memory))
        proc.start()
        steps = parent.recv()
        proc.join()

    base_w, base_c = wall[BARE], cpu[BARE]
    print(f"\n{n} clips a method ({args.epochs} epochs of {len(paths)} videos), each clip's best "
          f"of {args.rounds} interleaved rounds, one process a method; I3D sampling 32x2, "
          "random_resized 224 crop with MMAction2-exact cv2 resizes; 1 torch thread, 1 OpenCV "
          "thread, 1 decoder thread; malloc: "
          + ("retain_freed_memory()" if args.retain_freed_memory else "glibc defaults"))
    print(f"torchcodec: {no_torchcodec or 'installed'}; same frames: {same}\n")
    print(f"{'method':48s} {'clips/s':>8s} {'vs decord':>9s} {'CPU ms/clip':>12s} "
          f"{'vs decord':>9s}")
    for name in names:
        print(f"{name:48s} {n / wall[name]:8.2f} {base_w / wall[name]:8.2f}x "
              f"{1e3 * cpu[name] / n:12.2f} {base_c / cpu[name]:8.2f}x")
    print("\nVideoDataset decord, step by step, in one process (CPU ms a clip, each step's best "
          "of the rounds)")
    for step, ms in zip(STEPS, steps):
        print(f"  {step:46s} {ms:6.2f}")
    decode, transform = steps[:3].sum(), steps[3:7].sum()
    print(f"  {'= decoding + uint8 transform':46s} {decode:6.2f} + {transform:.2f} = "
          f"{decode + transform:.2f}: {steps[-1] / (decode + transform):.2f}x of bare decord")


if __name__ == "__main__":
    main()
