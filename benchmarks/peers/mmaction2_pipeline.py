"""MMAction2 1.2's video pipeline, timed as a peer of `benchmarks/data_throughput.py`.

Run by the side environment's Python (``make bench-peers``: mmaction2 1.2.0 without its
dependencies, mmengine 0.10.7, mmcv-lite 2.1.0, the main environment's decord and OpenCV); never
imported by dear_ray or its tests. Only MMAction2's data transforms are imported (its wheel lacks
``mmaction/models/localizers/drn``, so ``mmaction.models`` does not import).

    python mmaction2_pipeline.py SOCKET AUTHKEY_HEX

connects to the benchmark, receives the pipeline's settings and the clips (video, frame indices),
and answers the same requests as the benchmark's own method processes: an int ``j`` -> the
``(wall, cpu)`` seconds of clip j through the pipeline and ``pseudo_collate`` (one process, one
OpenCV and torch thread, glibc's malloc as MMAction2's DataLoader workers run);
``("output", j)`` -> clip j's ``inputs`` as uint8 numpy; ``("steps", rounds)`` -> the CPU seconds
of each transform, ``(rounds, clips, steps)``; None -> exit.

The pipeline is its I3D config's (``i3d_imagenet-pretrained-r50_8xb8-32x2x1-100e_kinetics400-rgb``):
DecordInit, SampleFrames, DecordDecode, Resize(-1, short), then MultiScaleCrop + Resize(crop) +
Flip (training) or ThreeCrop (test), FormatShape('NCTHW'), PackActionInputs. SampleFrames runs,
then its indices are replaced by the benchmark's (``frame_inds``), so every method decodes the
same frames (in test mode MMAction2 1.x places the clips as PySlowFast does, 0.x -- DEAR's fork,
dear_ray -- evenly spaced centres: the ready message says whether they differ).
"""

from __future__ import annotations

import sys
import time
from multiprocessing.connection import Client

import cv2
import numpy as np
import torch


def build(spec: dict) -> list:
    from mmaction.datasets.transforms import (
        DecordDecode, DecordInit, Flip, FormatShape, MultiScaleCrop, PackActionInputs, Resize,
        SampleFrames, ThreeCrop)

    head = [DecordInit(num_threads=1),
            SampleFrames(spec["clip_len"], spec["frame_interval"], spec["num_clips"],
                         test_mode=spec["test_mode"]),
            "plan", DecordDecode(), Resize(scale=(-1, spec["scale_short"]))]
    if spec["test_mode"]:
        middle = [ThreeCrop(spec["crop_size"])]
    else:
        middle = [MultiScaleCrop(spec["crop_size"], scales=tuple(spec["scales"]), random_crop=False,
                                 max_wh_scale_gap=spec["max_wh_scale_gap"]),
                  Resize(scale=(spec["crop_size"], spec["crop_size"]), keep_ratio=False),
                  Flip(flip_ratio=0.5)]
    return head + middle + [FormatShape("NCTHW"), PackActionInputs()]


def run(pipeline: list, path: str, plan: np.ndarray, times: list | None = None):
    """One clip through the pipeline and mmengine's pseudo_collate: ``(packed results, the
    indices SampleFrames drew)``; the CPU seconds of each step appended to `times`."""
    from mmengine.dataset import pseudo_collate

    results, sampled = {"filename": path, "start_index": 0, "modality": "RGB"}, None
    for step in pipeline:
        c = time.process_time()
        if step == "plan":  # the benchmark's frames (SampleFrames ran just before)
            sampled, results["frame_inds"] = results["frame_inds"], plan
            continue
        results = step(results)
        if times is not None:
            times.append(time.process_time() - c)
    c = time.process_time()
    pseudo_collate([results])
    if times is not None:
        times.append(time.process_time() - c)
    return results, sampled


def versions() -> str:
    import decord
    import mmaction
    import mmcv
    import mmengine

    return (f"mmaction2 {mmaction.__version__}, mmengine {mmengine.__version__}, mmcv-lite "
            f"{mmcv.__version__}, decord {decord.__version__}, OpenCV {cv2.__version__}")


def main() -> None:
    address, key = sys.argv[1], bytes.fromhex(sys.argv[2])
    conn = Client(address, authkey=key)
    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    spec, plans = conn.recv()
    pipeline = build(spec)
    plans = [(p, np.asarray(idx, dtype=np.int64)) for p, idx in plans]
    same = True
    for path, idx in plans:  # warm-up: page cache, decoder, allocator
        _, sampled = run(pipeline, path, idx)
        same &= not spec["test_mode"] or np.array_equal(np.ravel(sampled), idx)
    names = [type(s).__name__ for s in pipeline if s != "plan"] + ["pseudo_collate"]
    conn.send(("ready", versions(), same))
    while (msg := conn.recv()) is not None:
        if isinstance(msg, int):
            w, c = time.perf_counter(), time.process_time()
            run(pipeline, *plans[msg])
            conn.send((time.perf_counter() - w, time.process_time() - c))
        elif msg[0] == "output":
            conn.send(run(pipeline, *plans[msg[1]])[0]["inputs"].numpy())
        else:  # ("steps", rounds)
            out = np.zeros((msg[1], len(plans), len(names)))
            for r in range(msg[1]):
                for j, plan in enumerate(plans):
                    times: list = []
                    run(pipeline, *plan, times)
                    out[r, j] = times
            conn.send((names, out))


if __name__ == "__main__":
    main()
