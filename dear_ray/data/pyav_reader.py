"""decord's frames, decoded with PyAV, skipping the pictures no sampled frame depends on.

`open_pyav(path)` gives a `PyAVReader` for the files whose frames it reproduces exactly, and a
decord ``VideoReader`` for every other file; both have decord's reader interface (``len(reader)``,
``get_batch(indices)``). The reader is `data.decoder: pyav` (`dear_ray.data.decode`).

What `PyAVReader` keeps equal to decord (decord 0.6 ``VideoReader``):

- **Frame count and identity.** decord indexes a video by its packets: one frame per packet of
  the video stream, numbered in presentation-timestamp order. So does `PyAVReader`.
- **Pixels.** The accepted files are h264 (`stream_refusal`, `packet_refusal`). h264 decoding
  is exact: the standard fixes every output sample, so any conforming decoder gives decord's
  pictures. The sampled pictures are converted to RGB by FFmpeg's swscale at the same size,
  with the picture's colour matrix and range, as decord's filter graph converts them.
- **What is decoded.** A group of pictures is decoded forward from its key frame, as decord seeks
  to a frame. A packet whose picture is neither sampled nor used by another picture (a
  non-reference picture, ``nal_ref_idc == 0``) is dropped before decoding: FFmpeg's
  ``skip_frame = NONREF``, set for that packet only. No decoded picture depends on it.

The reader keeps a video's packets in memory (about the file's size). A file is refused, and decord
opens it, when it is larger than `MAX_FILE_BYTES`, is not h264 in 8-bit 4:2:0, has packets without
timestamps or repeated ones, does not start with a key frame, has a picture that is shown before
the key frame it is decoded after (open groups of pictures), or carries rotation metadata.
A batch that does not come out as expected (a sampled picture missing, out of order, of another
size or format, a decoder error) is decoded again by decord, which gives its frames or raises.
"""

from __future__ import annotations

import os
from typing import Any

import av
import numpy as np
from av.video.reformatter import VideoReformatter

SUPPORTED_CODECS = ("h264",)
SUPPORTED_PIX_FMTS = ("yuv420p", "yuvj420p")
MAX_FILE_BYTES = 64 * 2**20


class _Unexpected(Exception):
    """The batch met something `PyAVReader` does not model: decord decodes it instead."""


def stream_refusal(stream: Any) -> str | None:
    """Why the stream's codec settings are not modelled (before reading packets), else None."""
    ctx = stream.codec_context
    if ctx.name not in SUPPORTED_CODECS:
        return f"codec {ctx.name}"
    if ctx.pix_fmt not in SUPPORTED_PIX_FMTS:
        return f"pixel format {ctx.pix_fmt}"
    if stream.metadata.get("rotate", "0") not in ("0", ""):
        return "rotation metadata"
    return None


def index_packets(packets: list[Any]) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """``(pts, order, keys)`` of packets in decode order: their int64 timestamps, the packet of
    each frame (frame i is packet ``order[i]``) and the key packets' positions; None when a packet
    has no timestamp."""
    if any(p.pts is None for p in packets):
        return None
    pts = np.array([p.pts for p in packets], dtype=np.int64)
    order = np.argsort(pts, kind="stable")
    keys = np.flatnonzero([p.is_keyframe for p in packets])
    return pts, order, keys


def packet_refusal(index: tuple[np.ndarray, np.ndarray, np.ndarray] | None) -> str | None:
    """Why packets with this `index_packets` index are not modelled, else None."""
    if index is None or index[0].size == 0:
        return "packets without timestamps"
    pts, order, keys = index
    if len(np.unique(pts)) != len(pts):
        return "repeated timestamps"
    if keys.size == 0 or keys[0] != 0 or order[0] != 0:
        return "the first packet is not the first key frame"
    # closed groups: the frames shown from a key frame on are exactly the packets decoded from it
    if not np.array_equal(order[keys], keys):
        return "open groups of pictures"
    return None


class PyAVReader:
    """One video's packets, indexed as decord indexes them; decodes the frames asked for.

    Args:
        container: an open PyAV input container (closed by `close`).
        stream: its video stream.
        packets: the stream's packets in decode order (the ones with data).
        index: their `index_packets`, accepted by `packet_refusal`.
        path: the file, for decord when a batch is not as expected.
        num_threads: decoder threads (1: no threading).

    Attributes:
        fallbacks: batches decord decoded instead.
    """

    def __init__(self, container: Any, stream: Any, packets: list[Any],
                 index: tuple[np.ndarray, np.ndarray, np.ndarray], path: str,
                 num_threads: int = 1) -> None:
        self._container, self._stream, self._packets = container, stream, packets
        self.path, self.num_threads = path, num_threads
        self._pts, self._order, self._keys = index
        ctx = stream.codec_context
        if num_threads == 1:
            ctx.thread_type, ctx.thread_count = "NONE", 1
        else:
            ctx.thread_type, ctx.thread_count = "AUTO", num_threads
        self._size = (ctx.height, ctx.width)
        self._pix_fmt = ctx.pix_fmt
        self._rgb = VideoReformatter()
        self.fallbacks = 0

    def __len__(self) -> int:
        return len(self._packets)

    def close(self) -> None:
        self._container.close()

    def get_batch(self, indices: Any) -> np.ndarray:
        """uint8 ``(T, H, W, 3)`` RGB frames of `indices` (any order, repeats allowed)."""
        indices = np.asarray(indices, dtype=np.int64).reshape(-1)
        distinct, where = np.unique(indices, return_inverse=True)
        try:
            frames = self._decode(distinct)
        except (_Unexpected, av.FFmpegError):
            self.fallbacks += 1
            return decord_batch(self.path, indices, self.num_threads)
        if distinct.size == indices.size and np.array_equal(distinct, indices):
            return frames
        return frames[where.reshape(-1)]

    def _decode(self, frames: np.ndarray) -> np.ndarray:
        """Decode the sorted distinct `frames`, one group of pictures after another."""
        out = np.empty((frames.size, *self._size, 3), dtype=np.uint8)
        group = np.searchsorted(self._keys, frames, side="right") - 1
        starts = np.flatnonzero(np.r_[True, group[1:] != group[:-1]])
        for a, b in zip(starts, np.r_[starts[1:], frames.size]):
            self._decode_group(int(self._keys[group[a]]), frames[a:b], out[a:b])
        return out

    def _decode_group(self, key: int, frames: np.ndarray, out: np.ndarray) -> None:
        """Decode one group's `frames` into `out`: the packets from the key frame (packet `key`,
        also frame `key` in a closed group) to the last one a frame needs, the unsampled
        non-reference ones dropped."""
        ctx = self._stream.codec_context
        positions = self._order[frames]
        wanted = np.zeros(int(positions.max()) + 1, dtype=bool)
        wanted[positions] = True
        slot = {int(self._pts[p]): n for n, p in enumerate(positions)}
        state = {"first": int(self._pts[key]), "last": None}
        mode = None
        for pos in range(key, wanted.size):
            skip = "DEFAULT" if wanted[pos] else "NONREF"
            if skip != mode:
                ctx.skip_frame = mode = skip
            self._take(ctx.decode(self._packets[pos]), slot, out, state)
        ctx.skip_frame = "DEFAULT"
        self._take(ctx.decode(None), slot, out, state)
        ctx.flush_buffers()
        if slot:
            raise _Unexpected(f"{len(slot)} sampled frames not decoded")

    def _take(self, pictures: list[Any], slot: dict[int, int], out: np.ndarray,
              state: dict) -> None:
        """Convert the sampled ones of `pictures` into their slots (taking them off `slot`)."""
        for picture in pictures:
            pts = picture.pts
            if (pts is None or pts < state["first"]
                    or (state["last"] is not None and pts <= state["last"])
                    or (picture.height, picture.width) != self._size
                    or picture.format.name != self._pix_fmt):
                raise _Unexpected(f"unexpected picture (pts {pts})")
            state["last"] = pts
            n = slot.pop(pts, None)
            if n is not None:
                rgb = self._rgb.reformat(picture, format="rgb24",
                                         src_color_range=picture.color_range, threads=1)
                out[n] = rgb.to_ndarray()


def decord_batch(path: str, indices: np.ndarray, num_threads: int) -> np.ndarray:
    import decord

    reader = decord.VideoReader(path, ctx=decord.cpu(0), num_threads=num_threads)
    return reader.get_batch(np.asarray(indices).tolist()).asnumpy()


def open_pyav(path: str, num_threads: int = 1) -> Any:
    """A `PyAVReader` when it gives decord's frames for `path`, else a decord ``VideoReader``
    (also when PyAV cannot open or demux the file: decord then opens it or raises, as with
    ``data.decoder: decord``)."""
    import decord

    try:
        container = av.open(path) if os.path.getsize(path) <= MAX_FILE_BYTES else None
    except (av.FFmpegError, OSError):
        container = None
    if container is not None:
        try:
            stream = container.streams.best("video")
            if stream is not None and stream_refusal(stream) is None:
                packets = [p for p in container.demux(stream) if p.size]
                index = index_packets(packets)
                if packet_refusal(index) is None:
                    return PyAVReader(container, stream, packets, index, path, num_threads)
        except av.FFmpegError:
            pass
        container.close()
    return decord.VideoReader(path, ctx=decord.cpu(0), num_threads=num_threads)
