"""Video files of the synthetic data set: h264 clips and lossless stills, byte-reproducible.

Both encoders run x264 with one thread and without its SIMD code (`X264_DETERMINISM`), so the same
frames give the same bytes (given the PyAV / libx264 build), whichever process encodes them.
"""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np

#: x264 without its SIMD code: with it, 1 to 10% of the encodes of the same frames came out
#: different (PyAV 18.1, 100 encodes of one 32x32 clip: 3 distinct files; asm=0: 1 in 300, no
#: slower at these frame sizes). Its output is not always the SIMD one: about a quarter of the
#: demo-size videos decode a little differently from generator 1.1's.
X264_DETERMINISM = {"x264-params": "asm=0"}


def encode_mp4(path: Path, frames: np.ndarray, *, fps: int = 25, crf: int = 18) -> None:
    """Write uint8 RGB frames (T, H, W, 3) as h264/yuv420p mp4, reproducibly: one encoder thread
    and x264's plain C code (`X264_DETERMINISM`)."""
    with av.open(str(path), "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.height, stream.width = frames.shape[1:3]
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": str(crf), **X264_DETERMINISM}
        stream.codec_context.thread_count = 1
        for img in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def encode_still_mp4(path: Path, source: Path, frame: int, *, frames: int, fps: int = 25) -> None:
    """Write frame `frame` (0-based) of the DECODED video `source`, repeated `frames` times, as
    lossless h264 (qp 0, the decoded yuv420p planes unchanged): every frame of `path` decodes to
    exactly that frame of `source` (a SCUFO clip of its SCUBA clip)."""
    i = -1
    with av.open(str(source)) as container:
        for i, decoded in enumerate(container.decode(video=0)):
            if i == frame:
                planes = decoded.to_ndarray(format="yuv420p")
                height, width = decoded.height, decoded.width
                break
        else:
            raise ValueError(f"{source}: no frame {frame} (only {i + 1} frames)")
    with av.open(str(path), "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.height, stream.width = height, width
        stream.pix_fmt = "yuv420p"
        stream.options = {"qp": "0", **X264_DETERMINISM}
        stream.codec_context.thread_count = 1
        for _ in range(frames):
            for packet in stream.encode(av.VideoFrame.from_ndarray(planes, format="yuv420p")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
