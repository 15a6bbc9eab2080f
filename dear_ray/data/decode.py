"""Video decoding with decord, reading only the frames a clip needs.

decord fails in several ways (PLATFORM.md): `RuntimeError` at `VideoReader(...)` for files it
cannot open, `decord.DECORDError` (a plain `Exception`) at open or at `get_batch` for corrupt
packets, and a container with no frames either fails at open or reports zero frames. All of them
become `VideoDecodeError(path, reason)` here, so callers handle one exception type.

Open a reader inside `Dataset.__getitem__`, never before DataLoader workers fork. torch is
imported before decord on purpose (decord's bundled libraries otherwise clash with torch's).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch  # noqa: F401  (must be imported before decord)
import decord  # noqa: E402

if TYPE_CHECKING:
    from dear_ray.data.sampling import FrameSampler


class VideoDecodeError(Exception):
    """A video that cannot be opened or decoded.

    Attributes:
        path: the video file.
        reason: what went wrong, in words (the decoder's message shortened to one line).
    """

    def __init__(self, path: str | Path, reason: str) -> None:
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"cannot decode video {self.path}: {reason}")

    def __reduce__(self):  # keep (path, reason) when pickled across DataLoader workers
        return (type(self), (self.path, self.reason))


def _short(exc: BaseException) -> str:
    lines = [ln for ln in str(exc).strip().splitlines() if ln.strip()]
    text = lines[-1] if lines else ""
    return f"{type(exc).__name__}: {text[:300]}"


def open_video(path: str | Path, *, num_threads: int = 1) -> decord.VideoReader:
    """Open a video with decord and check it has at least one frame.

    Args:
        path: the video file.
        num_threads: decoder threads (1 suits DataLoader workers on few cores; 0 = decord's auto).

    Returns:
        A `decord.VideoReader` with ``len(reader) >= 1``.

    Raises:
        VideoDecodeError: missing, unreadable, corrupt or zero-frame file.
    """
    path = Path(path)
    if not path.is_file():
        raise VideoDecodeError(path, "file does not exist")
    if path.stat().st_size == 0:
        raise VideoDecodeError(path, "file is empty (0 bytes)")
    try:
        reader = decord.VideoReader(str(path), ctx=decord.cpu(0), num_threads=num_threads)
    except Exception as exc:  # RuntimeError or DECORDError, depending on where it fails
        raise VideoDecodeError(path, f"cannot open: {_short(exc)}") from exc
    if len(reader) <= 0:
        raise VideoDecodeError(path, "video has no frames")
    return reader


def get_frames(reader: decord.VideoReader, indices: np.ndarray, *, path: str | Path) -> np.ndarray:
    """Decode the given frames of an open reader.

    Args:
        reader: an open reader (from `open_video`).
        indices: 0-based frame indices, shape (T,), each in ``[0, len(reader))``; repeats allowed.
        path: the file, for error messages.

    Returns:
        uint8 array (T, H, W, 3), RGB.

    Raises:
        IndexError: an index outside the video (a sampler bug, not a bad file).
        VideoDecodeError: decord failed on corrupt packets or returned the wrong number of frames.
    """
    indices = np.asarray(indices, dtype=np.int64).reshape(-1)
    n = len(reader)
    if indices.size and (indices.min() < 0 or indices.max() >= n):
        raise IndexError(
            f"frame indices must lie in [0, {n}) for {path}; got min {indices.min()}, "
            f"max {indices.max()}"
        )
    try:
        frames = reader.get_batch(indices.tolist()).asnumpy()
    except Exception as exc:  # decord.DECORDError is a plain Exception
        raise VideoDecodeError(path, f"corrupt frames: {_short(exc)}") from exc
    if frames.ndim != 4 or frames.shape[0] != indices.size or frames.shape[-1] != 3:
        raise VideoDecodeError(
            path, f"decoder returned shape {frames.shape} for {indices.size} requested frames"
        )
    return np.ascontiguousarray(frames, dtype=np.uint8)


def read_frames(path: str | Path, indices: np.ndarray, *, num_threads: int = 1) -> np.ndarray:
    """Open a video and decode only the given frames: uint8 (T, H, W, 3).

    Raises:
        VideoDecodeError: see `open_video` and `get_frames`.
        IndexError: an index outside the video.
    """
    reader = open_video(path, num_threads=num_threads)
    return get_frames(reader, indices, path=path)


def read_sampled_clip(
    path: str | Path,
    sampler: FrameSampler,
    rng: np.random.Generator,
    *,
    num_threads: int = 1,
) -> tuple[np.ndarray, np.ndarray]:
    """Open a video, sample frame indices from its length, decode just those frames.

    Args:
        path: the video file.
        sampler: a frame sampler (`dear_ray.data.sampling`), ``sampler(num_frames, rng)``.
        rng: the random generator the sampler draws from.
        num_threads: decoder threads.

    Returns:
        ``(frames, indices)``: uint8 (N, H, W, 3) and the int64 (N,) 0-based frame indices.

    Raises:
        VideoDecodeError: the video cannot be opened or decoded, or has no frames.
    """
    reader = open_video(path, num_threads=num_threads)
    indices = sampler(len(reader), rng)
    return get_frames(reader, indices, path=path), indices
