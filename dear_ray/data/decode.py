"""Video decoding with decord (default) or torchcodec, reading only the frames a clip needs.

Two decoders sit behind one interface (`data.decoder`): `open_video(path, decoder=...)` gives a
reader with ``len(reader)`` frames and `get_frames(reader, indices)` decodes uint8 RGB frames
``(T, H, W, 3)``. On h264 yuv420p both give the same pixels (both convert with FFmpeg's swscale;
``benchmarks/data_throughput.py`` checks it) and the same frame count, so a sampler draws the same
indices from either.

- ``decord`` (pip wheel, bundles its own FFmpeg; last release 2021). It fails in several ways
  (PLATFORM.md): `RuntimeError` at `VideoReader(...)` for files it cannot open,
  `decord.DECORDError` (a plain `Exception`) at open or at `get_batch` for corrupt packets, and a
  container with no frames either fails at open or reports zero frames.
- ``torchcodec`` (PyTorch's maintained decoder, optional: the ``[torchcodec]`` extra, and FFmpeg
  4-8 shared libraries from the system, e.g. Debian's ``libavcodec59 libavformat59 libavutil57
  libavdevice59 libavfilter8 libswscale6 libswresample4``). Opened with ``seek_mode="exact"``
  (the file is scanned once, so the frame count is exact, as decord's). It raises `RuntimeError`
  for unreadable, truncated and zero-frame files.

Every decoder failure becomes `VideoDecodeError(path, reason)`, so callers handle one exception
type; a decoder that is not installed raises `DecoderUnavailableError` (never a bad video).

Open a reader inside `Dataset.__getitem__`, never before DataLoader workers fork. torch is
imported before decord on purpose (decord's bundled libraries otherwise clash with torch's).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch  # noqa: F401  (must be imported before decord)
import decord  # noqa: E402

if TYPE_CHECKING:
    from dear_ray.data.sampling import FrameSampler

DECODERS = ("decord", "torchcodec")
TORCHCODEC_HINT = (
    "pip install 'torchcodec>=0.17,<0.18' (the dear_ray[torchcodec] extra) and FFmpeg 4-8 shared "
    "libraries (Debian 12: apt-get install libavcodec59 libavformat59 libavutil57 libavdevice59 "
    "libavfilter8 libswscale6 libswresample4)"
)


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


class DecoderUnavailableError(ImportError):
    """The configured decoder (`data.decoder`) is not installed or cannot load its libraries."""


def _short(exc: BaseException) -> str:
    lines = [ln for ln in str(exc).strip().splitlines() if ln.strip()]
    text = lines[-1] if lines else ""
    return f"{type(exc).__name__}: {text[:300]}"


def check_decoder(decoder: str) -> None:
    """Raise unless `decoder` is known and importable.

    Raises:
        ValueError: an unknown name.
        DecoderUnavailableError: torchcodec or its FFmpeg libraries are missing (with the install
            commands).
    """
    if decoder not in DECODERS:
        raise ValueError(f"unknown data.decoder {decoder!r}; known: {', '.join(DECODERS)}")
    if decoder == "torchcodec":
        _torchcodec_decoder_class()


def _torchcodec_decoder_class():
    try:
        from torchcodec.decoders import VideoDecoder
    except Exception as exc:  # ImportError, or RuntimeError when FFmpeg's libraries are missing
        raise DecoderUnavailableError(
            f"data.decoder: torchcodec cannot be used ({_short(exc)}); it needs {TORCHCODEC_HINT}"
        ) from exc
    return VideoDecoder


class TorchCodecReader:
    """A torchcodec ``VideoDecoder`` behind decord's reader interface: ``len(reader)`` and
    ``get_batch(indices) -> uint8 numpy (T, H, W, 3)`` (any order, repeats allowed)."""

    def __init__(self, path: str, num_threads: int = 1) -> None:
        video_decoder = _torchcodec_decoder_class()
        self._decoder = video_decoder(path, seek_mode="exact", dimension_order="NHWC",
                                      num_ffmpeg_threads=num_threads)

    def __len__(self) -> int:
        return len(self._decoder)

    def get_batch(self, indices: list[int]) -> np.ndarray:
        return self._decoder.get_frames_at(indices).data.numpy()


def open_video(path: str | Path, *, num_threads: int = 1, decoder: str = "decord") -> Any:
    """Open a video and check it has at least one frame.

    Args:
        path: the video file.
        num_threads: decoder threads (1 suits DataLoader workers on few cores; 0 = auto).
        decoder: ``"decord"`` (a `decord.VideoReader`) or ``"torchcodec"`` (a `TorchCodecReader`).

    Returns:
        A reader with ``len(reader) >= 1``, for `get_frames`.

    Raises:
        VideoDecodeError: missing, unreadable, corrupt or zero-frame file.
        DecoderUnavailableError: torchcodec requested and not installed.
        ValueError: an unknown decoder.
    """
    if decoder not in DECODERS:
        raise ValueError(f"unknown data.decoder {decoder!r}; known: {', '.join(DECODERS)}")
    path = Path(path)
    if not path.is_file():
        raise VideoDecodeError(path, "file does not exist")
    if path.stat().st_size == 0:
        raise VideoDecodeError(path, "file is empty (0 bytes)")
    if decoder == "torchcodec":
        _torchcodec_decoder_class()  # a missing decoder is not a bad video: raise outside
    try:
        if decoder == "torchcodec":
            reader = TorchCodecReader(str(path), num_threads)
        else:
            reader = decord.VideoReader(str(path), ctx=decord.cpu(0), num_threads=num_threads)
    except Exception as exc:  # RuntimeError or DECORDError, depending on where it fails
        raise VideoDecodeError(path, f"cannot open: {_short(exc)}") from exc
    if len(reader) <= 0:
        raise VideoDecodeError(path, "video has no frames")
    return reader


def get_frames(reader: Any, indices: np.ndarray, *, path: str | Path) -> np.ndarray:
    """Decode the given frames of an open reader.

    Args:
        reader: an open reader (from `open_video`).
        indices: 0-based frame indices, shape (T,), each in ``[0, len(reader))``; repeats allowed.
        path: the file, for error messages.

    Returns:
        uint8 array (T, H, W, 3), RGB, C-contiguous.

    Raises:
        IndexError: an index outside the video (a sampler bug, not a bad file).
        VideoDecodeError: the decoder failed on corrupt packets or returned the wrong number of
            frames.
    """
    indices = np.asarray(indices, dtype=np.int64).reshape(-1)
    n = len(reader)
    if indices.size and (indices.min() < 0 or indices.max() >= n):
        raise IndexError(
            f"frame indices must lie in [0, {n}) for {path}; got min {indices.min()}, "
            f"max {indices.max()}"
        )
    try:
        batch = reader.get_batch(indices.tolist())
        frames = batch if isinstance(batch, np.ndarray) else batch.asnumpy()
    except Exception as exc:  # decord.DECORDError is a plain Exception, torchcodec's RuntimeError
        raise VideoDecodeError(path, f"corrupt frames: {_short(exc)}") from exc
    if frames.ndim != 4 or frames.shape[0] != indices.size or frames.shape[-1] != 3:
        raise VideoDecodeError(
            path, f"decoder returned shape {frames.shape} for {indices.size} requested frames"
        )
    return np.ascontiguousarray(frames, dtype=np.uint8)


def read_frames(path: str | Path, indices: np.ndarray, *, num_threads: int = 1,
                decoder: str = "decord") -> np.ndarray:
    """Open a video and decode only the given frames: uint8 (T, H, W, 3).

    Raises:
        VideoDecodeError: see `open_video` and `get_frames`.
        IndexError: an index outside the video.
    """
    reader = open_video(path, num_threads=num_threads, decoder=decoder)
    return get_frames(reader, indices, path=path)


def read_sampled_clip(
    path: str | Path,
    sampler: FrameSampler,
    rng: np.random.Generator,
    *,
    num_threads: int = 1,
    decoder: str = "decord",
) -> tuple[np.ndarray, np.ndarray]:
    """Open a video, sample frame indices from its length, decode just those frames.

    Args:
        path: the video file.
        sampler: a frame sampler (`dear_ray.data.sampling`), ``sampler(num_frames, rng)``.
        rng: the random generator the sampler draws from.
        num_threads: decoder threads.
        decoder: ``"decord"`` or ``"torchcodec"`` (`open_video`).

    Returns:
        ``(frames, indices)``: uint8 (N, H, W, 3) and the int64 (N,) 0-based frame indices.

    Raises:
        VideoDecodeError: the video cannot be opened or decoded, or has no frames.
    """
    reader = open_video(path, num_threads=num_threads, decoder=decoder)
    indices = sampler(len(reader), rng)
    return get_frames(reader, indices, path=path), indices
