"""Clips per second and CPU per clip of dear_ray's loader against MMAction2 1.2's pipeline and bare
decord, on the same clips, with a per-step CPU breakdown of both pipelines.

Writes 320x240 h264 videos with PyAV (`--short` of 64 frames, `--long` of 250), then runs two
paths, each a pipeline of MMAction2's I3D config (32 frames at interval 2, short side 256):

- ``train``: one clip, MultiScaleCrop(224, scales (1, 0.8), 5 fixed positions), resize to 224, flip;
- ``test``: 10 evenly spaced clips x ThreeCrop(256): 30 views of 3 x 32 x 256 x 256.

Every method runs in its own process, as a DataLoader worker runs only its dataset (in one shared
process the methods' large allocations change each other's malloc state), with one torch, one
OpenCV and one decoder thread:

- ``decord get_batch``: ``VideoReader(path).get_batch(indices).asnumpy()``, the indices in the
  sampler's order (what MMAction2's ``DecordDecode`` asks for): the decoder alone;
- ``MMAction2 1.2 pipeline``: its own transforms and ``pseudo_collate``, run by the side
  environment (``--peers-venv``, default ``$DEAR_RAY_PEERS_VENV`` or ``.venv-peers``, built by
  ``make bench-peers``; `benchmarks/peers/mmaction2_pipeline.py`); skipped with a line saying why
  where that environment is missing or MMAction2 does not import;
- ``VideoDataset <decoder>, <handover> handover``: ``dataset[i]`` + ``collate_skip_bad`` in a
  process set up as dear_ray's loaders set up theirs (`prepare_loading_process`); ``float``
  normalises on the CPU, ``uint8`` leaves that to the training device (MMAction2's output is
  uint8 too); decoders ``pyav`` (the default) and ``decord``, torchcodec rows when it is
  installed; TPN's float ColorJitter preset in training.

Every method sees the same frames (the dataset's sampler draws them; the others get its indices).
The parent drives the processes clip by clip, every method in turn, ``--rounds`` times, so every
method meets the same moments of a shared machine's load; a row gives the medians over the rounds
of its wall-clock clips/s and CPU ms per clip (its process, all threads), and ratios to decord and
MMAction2 (> 1 = faster). Then: the test views of one clip from MMAction2 and dear_ray compared
(max abs difference), and each pipeline's steps (CPU ms a clip, medians over the rounds; dear_ray's
timed inside its real path by wrapping its functions, time of nested calls going to the outer one).

Run: ``.venv/bin/python benchmarks/data_throughput.py [--short 6] [--long 3] [--rounds 6]``, or
``make bench-peers`` (builds the MMAction2 environment first).
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import secrets
import subprocess
import tempfile
import time
from multiprocessing.connection import Listener
from pathlib import Path

import av
import numpy as np

BARE = "decord get_batch (same frames)"
MMACTION2 = "MMAction2 1.2 pipeline (uint8 out)"
ROOT = Path(__file__).resolve().parents[1]
PEER = Path(__file__).resolve().parent / "peers" / "mmaction2_pipeline.py"
PATHS = {  # MMAction2's I3D config, both paths
    "train": {"clip_len": 32, "frame_interval": 2, "num_clips": 1, "test_mode": False,
              "scale_short": 256, "crop_size": 224, "scales": [1.0, 0.8], "max_wh_scale_gap": 0},
    "test": {"clip_len": 32, "frame_interval": 2, "num_clips": 10, "test_mode": True,
             "scale_short": 256, "crop_size": 256, "crops": 3},
}


def write_videos(folder: Path, count: int, num_frames: int, width: int = 320, height: int = 240,
                 prefix: str = "video") -> list[Path]:
    """Smoothly moving coloured gradients with a square, h264 yuv420p, 25 fps."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    paths = []
    for v in range(count):
        path = folder / f"{prefix}_{v:03d}.mp4"
        with av.open(str(path), "w") as container:
            stream = container.add_stream("libx264", rate=25)
            stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
            for i in range(num_frames):
                img = np.stack([127 + 120 * np.sin((x + 3 * i + 7 * v) / 40),
                                127 + 120 * np.cos((y - 2 * i) / 30), (x + y + 5 * i) % 256],
                               axis=-1).astype(np.uint8)
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
        return f"not installed ({type(exc.__cause__).__name__}; the [torchcodec] extra)"
    return None


def dataset(paths: list[Path], spec: dict, decoder: str = "pyav", handover: str = "uint8",
            color_jitter: bool = False):
    from dear_ray.data import (SampleFrames, VideoDataset, VideoRecord, build_test_transform,
                               build_train_transform)

    records = [VideoRecord(p, 0, p.stem, None, i + 1) for i, p in enumerate(paths)]
    sampler = SampleFrames(spec["clip_len"], spec["frame_interval"], spec["num_clips"],
                           test_mode=spec["test_mode"])
    if spec["test_mode"]:
        transform = build_test_transform(spec["crop_size"], spec["scale_short"], spec["crops"],
                                         handover=handover)
    else:
        transform = build_train_transform(
            spec["crop_size"], spec["scale_short"], "multiscale", scales=spec["scales"],
            max_wh_scale_gap=spec["max_wh_scale_gap"], num_fixed_crops=5,
            color_jitter=color_jitter, handover=handover)
    return VideoDataset(records, sampler, transform, test_mode=spec["test_mode"], decoder=decoder)


class Steps:
    """CPU time of wrapped functions, a nested wrapped call counted in its outer one."""

    def __init__(self) -> None:
        self.times: dict[str, float] = {}
        self.depth = 0

    def wrap(self, owner, attr: str, label) -> None:
        """Time ``owner.attr`` under ``label`` (a string, or a function of the call's args);
        nothing when there is no such attribute (an older dear_ray)."""
        fn = getattr(owner, attr, None)
        if fn is None:
            return

        def timed(*args, **kwargs):
            self.depth += 1
            start = time.process_time()
            try:
                return fn(*args, **kwargs)
            finally:
                self.depth -= 1
                if not self.depth:
                    name = label if isinstance(label, str) else label(*args, **kwargs)
                    self.times[name] = self.times.get(name, 0.0) + time.process_time() - start
        setattr(owner, attr, timed)


def _resize_label(frames, width, height, *args, **kwargs) -> str:
    return f"resize_frames -> {width}x{height}"


def dear_ray_steps(ds, clips: int, rounds: int) -> tuple[list[str], np.ndarray]:
    """CPU seconds ``(rounds, clips, steps)`` of `VideoDataset.__getitem__` and `collate_skip_bad`,
    the functions of its path wrapped (`Steps`); the step names."""
    from dear_ray.data import decode, presets, transforms
    from dear_ray.data.dataset import collate_skip_bad

    steps = Steps()
    steps.wrap(decode, "open_video", "open_video")
    steps.wrap(ds, "sampler", "sampler (frame indices)")
    steps.wrap(decode, "get_frames", "get_frames (decode)")
    for op in ds.transform.ops:
        if hasattr(op, "crop_box"):
            steps.wrap(op, "crop_box", "crop_box")
    steps.wrap(transforms, "resize_rows", "resize_rows (short side, rows of the crop)")
    steps.wrap(transforms, "resize_frames", _resize_label)
    steps.wrap(presets, "uint8_views", "uint8_views (views copied out)")
    steps.wrap(presets, "float_views", "float_views (views normalised out)")
    if ds.transform.color is not None:
        steps.wrap(ds.transform.color, "apply", "ColorJitter.apply")
    out = []
    for _ in range(rounds):
        for j in range(clips):
            steps.times = {}
            start = time.process_time()
            item = ds[j]
            middle = time.process_time()
            collate_skip_bad([item])
            del item  # as a loader does before the next item: its memory is reused
            rest = middle - start - sum(steps.times.values())
            out.append({**steps.times, "rest of __getitem__ (reader closed, ...)": rest,
                        "collate_skip_bad": time.process_time() - middle})
    names = list(dict.fromkeys(k for c in out for k in c))
    table = np.array([[c.get(k, 0.0) for k in names] for c in out])
    return names, table.reshape(rounds, clips, len(names))


def bare_steps(plans, rounds: int) -> tuple[list[str], np.ndarray]:
    import decord

    out = np.zeros((rounds, len(plans), 3))
    for r in range(rounds):
        for j, (path, idx) in enumerate(plans):
            t0 = time.process_time()
            reader = decord.VideoReader(str(path), ctx=decord.cpu(0), num_threads=1)
            t1 = time.process_time()
            batch = reader.get_batch(idx.tolist())
            t2 = time.process_time()
            batch.asnumpy()
            out[r, j] = t1 - t0, t2 - t1, time.process_time() - t2
    return ["VideoReader (open)", "get_batch (sampled order)", "asnumpy"], out


def method(name: str, path: str, paths: list[Path], plans: list):
    """``(one, output, steps)`` of a method: handle clip j; clip j's output as uint8 numpy
    ``(V, 3, T, H, W)`` (or float32; None: no output); the step breakdown over `rounds`."""
    import decord
    import torch

    if name == BARE:
        def one(j):
            p, idx = plans[j]
            decord.VideoReader(str(p), ctx=decord.cpu(0), num_threads=1).get_batch(
                idx.tolist()).asnumpy()
        return one, None, lambda rounds: bare_steps(plans, rounds)
    from dear_ray.data import collate_skip_bad

    try:
        from dear_ray.data import prepare_loading_process
    except ImportError:  # an older dear_ray (before / after runs): its DataLoader workers' set-up
        from dear_ray.train.data import _worker_init

        def prepare_loading_process():
            _worker_init(0)
    prepare_loading_process()  # as dear_ray's loaders, in a worker or in-process
    decoder, handover = name.removeprefix("VideoDataset ").split(" handover")[0].split(", ")
    jitter = handover.endswith("ColorJitter")
    ds = dataset(paths, PATHS[path], decoder, handover.split(" ")[0], jitter)

    def one(j):
        batch = collate_skip_bad([ds[j]])
        assert batch["clip"].dtype == (torch.uint8 if handover == "uint8" else torch.float32)

    def output(j):
        clip = ds[j]["clip"]
        return clip.contiguous().numpy() if clip.ndim == 5 else clip[None].contiguous().numpy()
    return one, output, lambda rounds: dear_ray_steps(ds, len(plans), rounds)


def serve(conn, name: str, path: str, paths: list[Path], plans: list) -> None:
    """A method's process: warm up on every clip, then answer the parent (see the peer's
    docstring: clip j -> (wall, cpu); ("output", j); ("steps", rounds); None -> exit)."""
    import cv2
    import torch

    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    one, output, steps = method(name, path, paths, plans)
    for j in range(len(plans)):
        one(j)
    conn.send(("ready", None, True))
    while (msg := conn.recv()) is not None:
        if isinstance(msg, int):
            w, c = time.perf_counter(), time.process_time()
            one(msg)
            conn.send((time.perf_counter() - w, time.process_time() - c))
        elif msg[0] == "output":
            conn.send(output(msg[1]) if output else None)
        else:
            conn.send(steps(msg[1]))


def start_peer(venv: Path, spec: dict, plans: list, tmp: str):
    """``((conn, process), versions)`` of the MMAction2 process, or ``(None, why not)``."""
    python = venv / "bin" / "python"
    if not python.is_file():
        return None, (f"skipped: no side environment at {venv} (`make bench-peers` builds it; "
                      "--peers-venv or DEAR_RAY_PEERS_VENV name another)")
    check = subprocess.run([str(python), "-c", "import mmaction.datasets.transforms, "
                            "mmengine.dataset, decord"], capture_output=True, text=True)
    if check.returncode:
        last = (check.stderr.strip().splitlines() or ["no message"])[-1]
        return None, f"skipped: MMAction2's transforms do not import in {venv} ({last})"
    key = secrets.token_bytes(16)
    log = open(os.path.join(tmp, "peer.log"), "w")
    with Listener(os.path.join(tmp, "peer.sock"), authkey=key) as listener:
        proc = subprocess.Popen([str(python), str(PEER), listener.address, key.hex()],
                                stdout=log, stderr=log)
        conn = listener.accept()
    conn.send((spec, [(str(p), idx.tolist()) for p, idx in plans]))
    try:
        _, versions, same = conn.recv()
    except EOFError:
        tail = Path(log.name).read_text().strip().splitlines() or ["no message"]
        return None, f"skipped: MMAction2's pipeline failed ({tail[-1]})"
    if not same:
        versions += ("; its test clips (1.x: PySlowFast's offsets) replaced by dear_ray's "
                     "(MMAction2 0.x's, DEAR's)")
    return (conn, proc), versions


def plans_of(paths: list[Path], spec: dict) -> list:
    """Clip j = video j: (path, the frame indices dear_ray's dataset draws for item j)."""
    from dear_ray.data import open_video

    ds = dataset(paths, spec)
    return [(p, ds.sampler(len(open_video(p)), ds.item_rng(i))) for i, p in enumerate(paths)]


def compare(conns: dict, clip: int, decoders: list[str]) -> list[str]:
    """MMAction2's test views of `clip` against dear_ray's (uint8 of each decoder, and float vs
    uint8)."""
    ours = {k: c.send(("output", clip)) or c.recv() for k, c in conns.items()
            if k.startswith("VideoDataset ") and "ColorJitter" not in k}
    lines = []
    theirs = None
    if MMACTION2 in conns:
        conns[MMACTION2].send(("output", clip))
        theirs = conns[MMACTION2].recv()  # (crops x clips) crop-major, crops left, right, middle
    for decoder in decoders:
        u8 = ours[f"VideoDataset {decoder}, uint8 handover"]
        if theirs is not None:
            crops = 3
            order = [j * crops + k for k in (0, 2, 1) for j in range(len(theirs) // crops)]
            diff = np.abs(theirs.astype(np.int16) - u8[order].astype(np.int16)).max()
            lines.append(f"test views of clip {clip}, {tuple(u8.shape)}: max |MMAction2 - "
                         f"dear_ray {decoder} uint8| = {diff}")
        float_name = f"VideoDataset {decoder}, float handover"
        if float_name in ours:
            import torch

            from dear_ray.data import ClipNormalizer

            norm = ClipNormalizer()(torch.from_numpy(u8)).numpy()
            diff = np.abs(ours[float_name] - norm).max()
            lines.append(f"test views of clip {clip}: max |dear_ray {decoder} float - normalised "
                         f"uint8| = {diff}")
    return lines


def run_path(path: str, paths: list[Path], args, ctx, tmp: str, decoders: list[str]) -> dict:
    spec = PATHS[path]
    plans = plans_of(paths, spec)
    names = [BARE] + [f"VideoDataset {d}, {h} handover"
                      for d in decoders for h in ("uint8", "float")]
    names += ["VideoDataset pyav, float + ColorJitter handover"] if path == "train" else []
    conns, procs = {}, []
    peer, versions = start_peer(args.peers_venv, spec, plans, tmp)
    if peer is not None:
        names.insert(1, MMACTION2)
        conns[MMACTION2], _ = peer
        procs.append(peer[1])
    for name in names:
        if name == MMACTION2:
            continue
        parent, child = ctx.Pipe()
        procs.append(ctx.Process(target=serve, daemon=True, args=(child, name, path, paths, plans)))
        procs[-1].start()
        conns[name] = parent
    conns = {name: conns[name] for name in names}
    for name in names:
        if name != MMACTION2:  # (it answered in start_peer)
            assert conns[name].recv()[0] == "ready", name
    n, rounds = len(plans), args.rounds
    wall = {k: np.zeros(rounds) for k in conns}
    cpu = {k: np.zeros(rounds) for k in conns}
    for r in range(rounds):  # clip by clip, every method in turn
        for j in range(n):
            for name, conn in conns.items():
                conn.send(j)
                w, c = conn.recv()
                wall[name][r] += w
                cpu[name][r] += c
    same = compare(conns, n - 1, decoders) if path == "test" else []
    steps = {}
    for name in (MMACTION2, "VideoDataset pyav, uint8 handover",
                 "VideoDataset pyav, float handover", "VideoDataset decord, uint8 handover", BARE):
        if name in conns:
            conns[name].send(("steps", rounds))
            steps[name] = conns[name].recv()
    for conn in conns.values():
        conn.send(None)
    for proc in procs:
        proc.join() if hasattr(proc, "join") else proc.wait(timeout=60)
    return {"wall": wall, "cpu": cpu, "n": n, "peer": versions, "same": same, "steps": steps}


def report(path: str, res: dict, args) -> None:
    wall, cpu, n = res["wall"], res["cpu"], res["n"]
    peer = MMACTION2 in wall
    print(f"\n== {path}: {n} clips ({args.short} videos of 64 frames, {args.long} of 250), medians "
          f"of {args.rounds} interleaved rounds; MMAction2: {res['peer']}")
    print(f"{'method':50s} {'clips/s':>8s} {'CPU ms/clip':>12s}   ratios (clips/s, CPU)")

    def ratio(base, name):
        return (f"{np.median(wall[base]) / np.median(wall[name]):5.2f}x "
                f"{np.median(cpu[base]) / np.median(cpu[name]):5.2f}x")
    for name in wall:
        line = (f"{name:50s} {n / np.median(wall[name]):8.2f} "
                f"{1e3 * np.median(cpu[name]) / n:12.2f}   {ratio(BARE, name)} decord")
        if peer:
            paired = wall[MMACTION2] / wall[name]
            line += (f"   {ratio(MMACTION2, name)} MMAction2 (rounds {paired.min():.2f}-"
                     f"{paired.max():.2f})")
        print(line)
    for line in res["same"]:
        print(line)
    print(f"\n{path}, step by step (CPU ms a clip, medians over the rounds):")
    for name, (steps, table) in res["steps"].items():
        per_round = table.mean(axis=1) * 1e3  # (rounds, steps)
        med = np.median(per_round, axis=0)
        print(f"  {name}: {np.median(per_round.sum(axis=1)):.2f}")
        for step, ms in zip(steps, med):
            print(f"    {step:52s} {ms:8.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--short", type=int, default=6, help="videos of 64 frames")
    parser.add_argument("--long", type=int, default=3, help="videos of 250 frames")
    parser.add_argument("--rounds", type=int, default=6, help="interleaved timing rounds")
    parser.add_argument("--paths", default="train,test", help="train, test or both")
    parser.add_argument("--peers-venv", type=Path, default=Path(
        os.environ.get("DEAR_RAY_PEERS_VENV", ROOT / ".venv-peers")),
        help="the MMAction2 side environment (make bench-peers)")
    args = parser.parse_args()
    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload(["torch", "cv2", "decord", "av", "dear_ray.data"])
    no_torchcodec = torchcodec_missing()
    decoders = ["pyav", "decord"] + ([] if no_torchcodec else ["torchcodec"])
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        paths = (write_videos(Path(tmp), args.short, 64, prefix="short")
                 + write_videos(Path(tmp), args.long, 250, prefix="long"))
        print(f"wrote {len(paths)} videos 320x240 h264 in {time.perf_counter() - t0:.1f} s; one "
              f"process a method, 1 torch / OpenCV / decoder thread; torchcodec: "
              f"{no_torchcodec or 'installed'}")
        for path in args.paths.split(","):
            report(path, run_path(path, paths, args, ctx, tmp, decoders), args)


if __name__ == "__main__":
    main()
