"""`data.decoder: pyav` gives decord's frame count and pixels, decoding fewer pictures."""

from __future__ import annotations

from pathlib import Path

import av
import decord
import numpy as np
import pytest

from dear_ray.data.decode import open_video, read_clip
from dear_ray.data.pyav_reader import PyAVReader, open_pyav
from dear_ray.data.sampling import SampleFrames


def noisy_frames(num: int, height: int, width: int) -> np.ndarray:
    """Moving gradients with noise: the encoder uses P and B pictures with real residuals."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    rng = np.random.default_rng(num)
    frames = [np.stack([127 + 120 * np.sin((x + 3 * i) / 7), 127 + 120 * np.cos((y - 2 * i) / 5),
                        (x * y / 9 + 5 * i) % 256], axis=-1) + rng.normal(0, 20, (height, width, 3))
              for i in range(num)]
    return np.clip(frames, 0, 255).astype(np.uint8)


def encode(path: Path, num: int = 48, height: int = 48, width: int = 64, *,
           codec: str = "libx264", pix_fmt: str = "yuv420p", options: dict | None = None,
           colorspace: int | None = None) -> Path:
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=30, options=options or {})
        stream.width, stream.height, stream.pix_fmt = width, height, pix_fmt
        if colorspace is not None:  # BT.709 matrix, limited range
            stream.codec_context.colorspace, stream.codec_context.color_range = colorspace, 1
        for img in noisy_frames(num, height, width):
            for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


H264_CASES = {
    "b_pyramid": dict(options={"bf": "3", "b-pyramid": "normal"}),
    "groups_of_9": dict(num=60, options={"g": "9", "bf": "2"}),
    "no_b_frames": dict(options={"bf": "0"}),
    "odd_size": dict(height=42, width=58),
    "bt709": dict(colorspace=1),
    "full_range": dict(pix_fmt="yuvj420p"),
    "mkv": dict(),
}


@pytest.fixture(scope="module")
def h264(tmp_path_factory):
    root = tmp_path_factory.mktemp("pyav")
    return {name: encode(root / f"{name}.{'mkv' if name == 'mkv' else 'mp4'}", **kw)
            for name, kw in H264_CASES.items()}


def batches(count: int) -> list[np.ndarray]:
    """Every frame; training clips (32 x 2 style, scaled down); overlapping test clips in the
    sampler's order; random sets in random order with repeats."""
    rng = np.random.default_rng(count)
    out = [np.arange(count), np.arange(0, 16, 2) + 3, np.arange(count - 1, -1, -7)]
    out += [np.r_[np.arange(0, 16, 2), np.arange(4, 20, 2), np.arange(8, 24, 2)] % count]
    out += [rng.integers(0, count, size=12) for _ in range(4)]
    return out


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("name", list(H264_CASES))
def test_h264_frames_and_count_are_decords(h264, name, threads):
    path = str(h264[name])
    reference = decord.VideoReader(path, num_threads=1)
    reader = open_pyav(path, threads)
    assert isinstance(reader, PyAVReader) and len(reader) == len(reference)
    for idx in batches(len(reference)):
        np.testing.assert_array_equal(reader.get_batch(idx),
                                      reference.get_batch(idx.tolist()).asnumpy())
    assert reader.fallbacks == 0


def test_unsampled_non_reference_pictures_are_not_decoded(h264, monkeypatch):
    """Every other frame of a B-picture video: the decoder outputs fewer pictures than it was
    sent packets (the skipped ones), and still every sampled one."""
    reader = open_pyav(str(h264["b_pyramid"]))
    ctx = reader._stream.codec_context
    counts = {"sent": 0, "out": 0}

    class Counting:
        def __getattr__(self, attr):
            return getattr(ctx, attr)

        def __setattr__(self, attr, value):
            setattr(ctx, attr, value)

        def decode(self, packet=None):
            pictures = ctx.decode(packet)
            counts["sent"] += packet is not None
            counts["out"] += len(pictures)
            return pictures

    monkeypatch.setattr(reader, "_stream", type("S", (), {"codec_context": Counting()})())
    idx = np.arange(0, 40, 2)
    frames = reader.get_batch(idx)
    expected = decord.VideoReader(str(h264["b_pyramid"])).get_batch(idx.tolist()).asnumpy()
    np.testing.assert_array_equal(frames, expected)
    assert counts["out"] < counts["sent"] and counts["out"] >= idx.size, counts
    assert reader.fallbacks == 0


def test_other_codecs_go_to_decord(tmp_path):
    path = encode(tmp_path / "xvid.avi", codec="mpeg4", options={"bf": "2"})
    reader = open_video(path, decoder="pyav")
    assert isinstance(reader, decord.VideoReader)
    np.testing.assert_array_equal(reader.get_batch([0, 5, 9]).asnumpy(),
                                  decord.VideoReader(str(path)).get_batch([0, 5, 9]).asnumpy())


def test_files_over_the_size_limit_go_to_decord(h264, monkeypatch):
    import dear_ray.data.pyav_reader as pyav_reader

    path = h264["b_pyramid"]
    monkeypatch.setattr(pyav_reader, "MAX_FILE_BYTES", path.stat().st_size - 1)
    assert isinstance(open_pyav(str(path)), decord.VideoReader)
    monkeypatch.setattr(pyav_reader, "MAX_FILE_BYTES", path.stat().st_size)
    assert isinstance(open_pyav(str(path)), PyAVReader)


def test_a_batch_that_is_not_as_expected_is_decords(h264):
    """Packets out of step with the index (here: one packet given twice): the pictures do not
    come out as modelled, and decord decodes the batch instead."""
    path = str(h264["b_pyramid"])
    reader = open_pyav(path)
    reader._packets[10] = reader._packets[9]
    idx = np.arange(4, 30, 3)
    np.testing.assert_array_equal(reader.get_batch(idx),
                                  decord.VideoReader(path).get_batch(idx.tolist()).asnumpy())
    assert reader.fallbacks == 1


def test_read_clip_is_the_same_with_either_decoder(h264):
    assert isinstance(open_video(h264["groups_of_9"]), PyAVReader)  # the default
    assert isinstance(open_video(h264["groups_of_9"], decoder="decord"), decord.VideoReader)
    sampler = SampleFrames(8, 2, 3, test_mode=True)
    a = read_clip(h264["groups_of_9"], sampler, None, decoder="pyav")
    b = read_clip(h264["groups_of_9"], sampler, None, decoder="decord")
    np.testing.assert_array_equal(a.indices, b.indices)
    np.testing.assert_array_equal(a.frames, b.frames)
