"""Fixtures writing small real videos with PyAV: good ones with known pixels, and broken ones."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest


def frame_rgb(i: int, height: int, width: int) -> np.ndarray:
    """The pixels of frame i of a test video: R = 12 i, G = 4 x, B = 5 y (clipped to 255)."""
    y, x = np.mgrid[0:height, 0:width]
    r = np.full((height, width), 12 * i)
    return np.clip(np.stack([r, 4 * x, 5 * y], axis=-1), 0, 255).astype(np.uint8)


def write_video(
    path: Path,
    num_frames: int = 20,
    height: int = 48,
    width: int = 64,
    *,
    codec: str = "libx264",
    frames: np.ndarray | None = None,
) -> Path:
    """Encode `frames` (N, H, W, 3) uint8, or `frame_rgb` frames, to `path` (container from suffix)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if frames is None:
        frames = np.stack([frame_rgb(i, height, width) for i in range(num_frames)])
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=25)
        stream.height, stream.width = frames.shape[1:3]
        stream.pix_fmt = "yuv420p"
        if codec == "libx264":
            stream.options = {"crf": "10"}
        for img in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def write_zero_frame_video(path: Path) -> Path:
    """A valid mp4 container with a video stream and no frames."""
    container = av.open(str(path), "w")
    stream = container.add_stream("libx264", rate=25)
    stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
    container.start_encoding()
    container.close()
    return path


@pytest.fixture(scope="session")
def video_dir(tmp_path_factory) -> Path:
    """A folder with good videos (20 frames 48x64, h264) and every kind of broken one."""
    root = tmp_path_factory.mktemp("videos")
    good = write_video(root / "good" / "v_good.mp4")
    write_video(root / "good" / "v_good2.mp4", num_frames=12)
    write_video(root / "good" / "v_good.mkv")
    (root / "bad").mkdir()
    (root / "bad" / "random.mp4").write_bytes(np.random.default_rng(0).bytes(4096))
    (root / "bad" / "empty.mp4").write_bytes(b"")
    data = good.read_bytes()
    (root / "bad" / "truncated.mp4").write_bytes(data[: len(data) // 2])
    mkv = (root / "good" / "v_good.mkv").read_bytes()
    (root / "bad" / "truncated.mkv").write_bytes(mkv[: len(mkv) // 2])
    write_zero_frame_video(root / "bad" / "zero.mp4")
    return root


@pytest.fixture(scope="session")
def good_video(video_dir) -> Path:
    return video_dir / "good" / "v_good.mp4"


@pytest.fixture(scope="session")
def make_video():
    """`write_video(path, num_frames=20, height=48, width=64, *, codec, frames=None) -> path`."""
    return write_video


@pytest.fixture(scope="session")
def expected_frame():
    """`frame_rgb(i, height, width)`: the pixels the test videos were encoded from."""
    return frame_rgb
