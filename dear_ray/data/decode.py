"""Video decoding with PyAV (default), decord or torchcodec, reading only the frames a clip needs.

Three decoders sit behind one interface (`data.decoder`): `open_video(path, decoder=...)` gives a
reader with ``len(reader)`` frames and `get_frames(reader, indices)` decodes uint8 RGB frames
``(T, H, W, 3)``. On h264 yuv420p all give the same pixels (all convert with FFmpeg's swscale;
tests/data/test_pyav_reader.py and ``benchmarks/data_throughput.py`` check it) and the same frame
count, so a sampler draws the same indices from any of them.

- ``pyav`` (the default; PyAV is a dependency): decord's frames, decoded by PyAV without the
  pictures no sampled frame depends on (`dear_ray.data.pyav_reader`). It reads h264 files itself
  and hands every other file (MPEG-4 part 2 AVIs, VP9, ...) to decord, so its failures are
  decord's.
- ``decord`` (pip wheel, bundles its own FFmpeg; last release 2021). It fails in several ways
  (measured with decord 0.6): `RuntimeError` at `VideoReader(...)` for files it cannot open,
  `decord.DECORDError` (a plain `Exception`) at open or at `get_batch` for corrupt packets, and a
  container with no frames either fails at open or reports zero frames.
- ``torchcodec`` (PyTorch's maintained decoder, optional: the ``[torchcodec]`` extra, and FFmpeg
  4-8 shared libraries from the system, e.g. Debian's ``libavcodec59 libavformat59 libavutil57
  libavdevice59 libavfilter8 libswscale6 libswresample4``). Opened with ``seek_mode="exact"``
  (the file is scanned once, so the frame count is exact, as decord's). It raises `RuntimeError`
  for unreadable, truncated and zero-frame files.

`read_clip` decodes each distinct sampled frame once, in file order (`SampledClip`: the frames and
the map from the sampled indices to them); `DecodedFramesCache` (`data.decoded_cache_mb`) keeps
decoded clips of small data sets in memory across epochs.

Every decoder failure becomes `VideoDecodeError(path, reason)`, so callers handle one exception
type; a decoder that is not installed raises `DecoderUnavailableError` (never a bad video).

Open a reader inside `Dataset.__getitem__`, never before DataLoader workers fork. torch is
imported before decord on purpose (decord's bundled libraries otherwise clash with torch's).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch  # (must be imported before decord)
import torch.utils.dlpack
import decord  # noqa: E402

from dear_ray.data.pyav_reader import open_pyav

if TYPE_CHECKING:
    from dear_ray.data.sampling import FrameSampler

DECODERS = ("pyav", "decord", "torchcodec")
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


def open_video(path: str | Path, *, num_threads: int = 1, decoder: str = "pyav") -> Any:
    """Open a video and check it has at least one frame.

    Args:
        path: the video file.
        num_threads: decoder threads (1 suits DataLoader workers on few cores; 0 = auto).
        decoder: ``"pyav"`` (a `PyAVReader`, or a `decord.VideoReader` for the files it hands to
            decord), ``"decord"`` (a `decord.VideoReader`) or ``"torchcodec"`` (a
            `TorchCodecReader`).

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
        elif decoder == "pyav":
            reader = open_pyav(str(path), num_threads)
        else:
            reader = decord.VideoReader(str(path), ctx=decord.cpu(0), num_threads=num_threads)
    except Exception as exc:  # RuntimeError or DECORDError, depending on where it fails
        raise VideoDecodeError(path, f"cannot open: {_short(exc)}") from exc
    if len(reader) <= 0:
        raise VideoDecodeError(path, "video has no frames")
    return reader


def _as_numpy(batch: Any) -> np.ndarray:
    """A decoder's batch as numpy without copying: a decord ``NDArray`` through DLPack (its
    ``asnumpy()`` would copy the clip once more; the array keeps the decord buffer alive through
    the torch tensor it views)."""
    if isinstance(batch, np.ndarray):
        return batch
    if hasattr(batch, "to_dlpack"):
        return torch.utils.dlpack.from_dlpack(batch.to_dlpack()).numpy()
    return batch.asnumpy()


def get_frames(reader: Any, indices: np.ndarray, *, path: str | Path) -> np.ndarray:
    """Decode the given frames of an open reader.

    Args:
        reader: an open reader (from `open_video`).
        indices: 0-based frame indices, shape (T,), each in ``[0, len(reader))``; repeats allowed.
        path: the file, for error messages.

    Returns:
        uint8 array (T, H, W, 3), RGB, C-contiguous: the decoder's own buffer, not a copy.

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
        frames = _as_numpy(reader.get_batch(indices.tolist()))
    except Exception as exc:  # decord.DECORDError is a plain Exception, torchcodec's RuntimeError
        raise VideoDecodeError(path, f"corrupt frames: {_short(exc)}") from exc
    if frames.ndim != 4 or frames.shape[0] != indices.size or frames.shape[-1] != 3:
        raise VideoDecodeError(
            path, f"decoder returned shape {frames.shape} for {indices.size} requested frames"
        )
    return np.ascontiguousarray(frames, dtype=np.uint8)


def read_frames(path: str | Path, indices: np.ndarray, *, num_threads: int = 1,
                decoder: str = "pyav") -> np.ndarray:
    """Open a video and decode only the given frames: uint8 (T, H, W, 3).

    Raises:
        VideoDecodeError: see `open_video` and `get_frames`.
        IndexError: an index outside the video.
    """
    reader = open_video(path, num_threads=num_threads, decoder=decoder)
    return get_frames(reader, indices, path=path)


_SHARED_CACHES: dict[tuple[int, str], DecodedFramesCache] = {}


class DecodedFramesCache:
    """Decoded clips of one process, least recently used first out, within a byte budget.

    Keyed by (video path, sampled frame indices); holds the uint8 frames exactly as the decoder
    returned them (`read_clip`: the distinct frames; read-only from then on, so nothing downstream
    can alter a cached clip), and each video's frame count, so a hit neither opens nor decodes the
    file and a cached clip is bit for bit the decoded one. A clip larger than the whole budget is
    not kept. Pickling (a DataLoader worker's copy of the dataset) keeps only the budget: every
    process fills its own cache.

    Args:
        max_bytes: the budget for the frames (the frame counts are not counted).
    """

    def __init__(self, max_bytes: int) -> None:
        if max_bytes < 0:
            raise ValueError(f"max_bytes must be >= 0, got {max_bytes}")
        self.max_bytes = int(max_bytes)
        self._clips: OrderedDict[tuple[str, bytes], np.ndarray] = OrderedDict()
        self._counts: dict[str, int] = {}
        self.nbytes = 0
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._clips)

    def num_frames(self, path: str | Path) -> int | None:
        """The frame count of a video decoded before, else None."""
        return self._counts.get(str(path))

    def set_num_frames(self, path: str | Path, count: int) -> None:
        self._counts[str(path)] = int(count)

    @staticmethod
    def _key(path: str | Path, indices: np.ndarray) -> tuple[str, bytes]:
        return str(path), np.asarray(indices, dtype=np.int64).tobytes()

    def get(self, path: str | Path, indices: np.ndarray) -> np.ndarray | None:
        """The cached frames of these indices (now the most recently used), else None."""
        key = self._key(path, indices)
        frames = self._clips.get(key)
        if frames is None:
            self.misses += 1
            return None
        self._clips.move_to_end(key)
        self.hits += 1
        return frames

    def put(self, path: str | Path, indices: np.ndarray, frames: np.ndarray) -> None:
        """Keep `frames` (made read-only), evicting the least recently used clips to fit."""
        key = self._key(path, indices)
        if key in self._clips or frames.nbytes > self.max_bytes:
            return
        while self.nbytes + frames.nbytes > self.max_bytes:
            _, old = self._clips.popitem(last=False)
            self.nbytes -= old.nbytes
        frames.flags.writeable = False
        self._clips[key] = frames
        self.nbytes += frames.nbytes

    @classmethod
    def shared(cls, max_bytes: int, decoder: str = "pyav") -> DecodedFramesCache:
        """This process's cache of that budget and decoder, one for every dataset that asks (a
        trial's training set, its SDN masked set and its test-mode pass over the training split
        read the same clips). A pickled shared cache is, where it is unpickled, that process's
        shared cache of the same budget and decoder."""
        key = (int(max_bytes), decoder)
        cache = _SHARED_CACHES.get(key)
        if cache is None:
            cache = _SHARED_CACHES[key] = cls(max_bytes)
            cache._shared_key = key
        return cache

    def __reduce__(self):
        key = getattr(self, "_shared_key", None)
        if key is not None:
            return (DecodedFramesCache.shared, key)
        return (DecodedFramesCache, (self.max_bytes,))  # a private cache: an empty copy

    def __repr__(self) -> str:
        return (f"DecodedFramesCache({len(self)} clips, {self.nbytes / 2**20:.1f} of "
                f"{self.max_bytes / 2**20:.1f} MiB, {self.hits} hits, {self.misses} misses)")


@dataclass(frozen=True)
class SampledClip:
    """A sampled clip as its distinct frames, each decoded once.

    Attributes:
        frames: uint8 ``(U, H, W, 3)``: the distinct sampled frames in increasing frame order
            (read-only when they come from or went into a `DecodedFramesCache`).
        indices: int64 ``(N,)``: the 0-based frame indices the sampler drew (clips concatenated).
        frame_map: int64 ``(N,)``: sampled frame n is ``frames[frame_map[n]]``; None when the
            indices are strictly increasing (``frames`` are then the sampled frames in order).
        frame_indices: int64 ``(U,)``: the frame index of each of ``frames``.
    """

    frames: np.ndarray
    indices: np.ndarray
    frame_map: np.ndarray | None
    frame_indices: np.ndarray

    def expanded(self) -> np.ndarray:
        """uint8 ``(N, H, W, 3)``: the sampled frames in the sampler's order (a copy when some
        repeat or come out of order, else ``frames`` itself)."""
        return self.frames if self.frame_map is None else self.frames[self.frame_map]


def distinct_frames(indices: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """``(distinct, frame_map)``: the sorted distinct `indices` and where each index is among
    them (None when `indices` are strictly increasing: they are their own distinct frames)."""
    indices = np.asarray(indices, dtype=np.int64).reshape(-1)
    if indices.size < 2 or bool(np.all(indices[1:] > indices[:-1])):
        return indices, None
    distinct, frame_map = np.unique(indices, return_inverse=True)
    return distinct, frame_map.astype(np.int64)


def read_clip(
    path: str | Path,
    sampler: FrameSampler,
    rng: np.random.Generator,
    *,
    num_threads: int = 1,
    decoder: str = "pyav",
    cache: DecodedFramesCache | None = None,
) -> SampledClip:
    """Open a video, sample frame indices from its length, decode each distinct frame once, in
    file order.

    MMAction2's ``DecordDecode`` asks the decoder for the indices in the sampler's order, so
    overlapping test clips seek back and decode frames again (10 clips of 32 frames at interval 2
    read 320 frames, 32-64 distinct ones in a 64-frame video); decoding the distinct frames once,
    in order, gives the same pixels (decoding is deterministic and decord's seeks are frame-exact;
    tests/data/test_decode.py checks it, `benchmarks/data_throughput.py` against MMAction2).

    Args:
        path: the video file.
        sampler: a frame sampler (`dear_ray.data.sampling`), ``sampler(num_frames, rng)``.
        rng: the random generator the sampler draws from.
        num_threads: decoder threads.
        decoder: ``"pyav"``, ``"decord"`` or ``"torchcodec"`` (`open_video`).
        cache: optional `DecodedFramesCache`: the distinct frames of the same (video, indices)
            come from it (the sampler draws from `rng` as without it, from the same frame count).

    Raises:
        VideoDecodeError: the video cannot be opened or decoded, or has no frames.
    """
    count = cache.num_frames(path) if cache is not None else None
    reader = None
    if count is None:
        reader = open_video(path, num_threads=num_threads, decoder=decoder)
        count = len(reader)
        if cache is not None:
            cache.set_num_frames(path, count)
    indices = np.asarray(sampler(count, rng), dtype=np.int64)
    distinct, frame_map = distinct_frames(indices)
    frames = cache.get(path, indices) if cache is not None else None
    if frames is None:
        if reader is None:
            reader = open_video(path, num_threads=num_threads, decoder=decoder)
        frames = get_frames(reader, distinct, path=path)
        if cache is not None:
            cache.put(path, indices, frames)
    return SampledClip(frames, indices, frame_map, distinct)


def read_sampled_clip(
    path: str | Path,
    sampler: FrameSampler,
    rng: np.random.Generator,
    *,
    num_threads: int = 1,
    decoder: str = "pyav",
    cache: DecodedFramesCache | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """`read_clip` expanded: ``(frames, indices)``, uint8 ``(N, H, W, 3)`` in the sampler's order
    and the int64 ``(N,)`` 0-based frame indices (frames read-only when they come from or went
    into `cache` and no index repeats).

    Raises:
        VideoDecodeError: the video cannot be opened or decoded, or has no frames.
    """
    clip = read_clip(path, sampler, rng, num_threads=num_threads, decoder=decoder, cache=cache)
    return clip.expanded(), clip.indices
