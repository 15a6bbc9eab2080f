import decord
import numpy as np
import pytest

from dear_ray.data.decode import (
    VideoDecodeError,
    get_frames,
    open_video,
    read_frames,
    read_sampled_clip,
)
from dear_ray.data.sampling import SampleFrames

BROKEN = ["random.mp4", "empty.mp4", "truncated.mp4", "truncated.mkv", "zero.mp4"]


@pytest.mark.parametrize("name", ["v_good.mp4", "v_good.mkv"])
def test_round_trip_reads_the_requested_frames(video_dir, expected_frame, name):
    path = video_dir / "good" / name
    assert len(open_video(path)) == 20
    idx = np.array([0, 5, 19, 5])
    frames = read_frames(path, idx)
    assert frames.dtype == np.uint8 and frames.shape == (4, 48, 64, 3)
    expected = np.stack([expected_frame(i, 48, 64) for i in idx]).astype(float)
    # lossy h264 + yuv420: compare away from the borders, within a few grey levels
    err = np.abs(frames.astype(float) - expected)[:, 4:-4, 4:-4]
    assert err.mean() < 3 and np.median(err) <= 3
    # frame identity: the red channel encodes the index (12 i)
    np.testing.assert_allclose(frames[:, 24, 32, 0], 12 * idx, atol=6)


def test_decord_frames_are_its_batch_without_a_copy_and_outlive_it(good_video):
    import gc

    idx = [0, 3, 3, 19, 7]
    expected = decord.VideoReader(str(good_video), num_threads=1).get_batch(idx).asnumpy()
    clips = [get_frames(open_video(good_video, decoder="decord"), idx, path=good_video)
             for _ in range(3)]
    gc.collect()  # the readers and batches are gone; the arrays keep decord's buffers
    junk = [decord.VideoReader(str(good_video)).get_batch(idx).asnumpy() for _ in range(3)]
    assert all(np.array_equal(c, expected) for c in clips) and len(junk) == 3
    assert clips[0].flags.c_contiguous and clips[0].dtype == np.uint8
    assert clips[0].base is not None  # a view (of the DLPack tensor), not asnumpy's copy


def test_read_sampled_clip_uses_the_decoder_length(good_video):
    frames, idx = read_sampled_clip(good_video, SampleFrames(4, 2, 1, test_mode=True), None)
    # 20 frames, span 8: offset int(13 / 2) = 6
    np.testing.assert_array_equal(idx, [6, 8, 10, 12])
    np.testing.assert_allclose(frames[:, 24, 32, 0], 12 * idx, atol=6)


@pytest.mark.parametrize("name", BROKEN)
def test_broken_files_raise_video_decode_error(video_dir, name):
    path = video_dir / "bad" / name
    with pytest.raises(VideoDecodeError) as err:
        read_frames(path, [0])
    assert err.value.path == path
    assert str(path) in str(err.value) and err.value.reason


def test_missing_file(tmp_path):
    with pytest.raises(VideoDecodeError, match="does not exist"):
        open_video(tmp_path / "nope.mp4")


def test_decord_error_at_get_batch_is_wrapped(good_video):
    class CorruptReader:
        def __len__(self):
            return 10

        def get_batch(self, indices):
            raise decord.DECORDError("threaded_decoder.cc: Error sending packet")

    with pytest.raises(VideoDecodeError, match="corrupt frames: DECORDError: .*sending packet"):
        get_frames(CorruptReader(), [1, 2], path=good_video)


def test_out_of_range_index_is_a_programming_error(good_video):
    with pytest.raises(IndexError, match=r"\[0, 20\).*max 20"):
        read_frames(good_video, [0, 20])


def test_corrupted_bytes_never_escape_as_other_errors(video_dir, tmp_path):
    """Overwrite 200-byte spans of a good file with noise, every 100 bytes from byte 200 to the
    end: decoding either works or raises VideoDecodeError. The encoder's container metadata
    differs from run to run, so the spans sweep the whole file rather than sit at random places."""
    data = bytearray((video_dir / "good" / "v_good.mkv").read_bytes())
    rng = np.random.default_rng(1)
    outcomes = []
    for k, pos in enumerate(range(200, len(data) - 100, 100)):
        bad = bytearray(data)
        bad[pos : pos + 200] = rng.bytes(200)
        path = tmp_path / f"c{k}.mkv"
        path.write_bytes(bytes(bad))
        try:
            n = len(open_video(path))
            frames = read_frames(path, np.arange(n))
            assert frames.shape == (n, 48, 64, 3)
            outcomes.append("ok")
        except VideoDecodeError:
            outcomes.append("error")
    # 20 runs of the fixture: 7-10 errors and 13-20 clean decodes out of 23-28 spans
    assert outcomes.count("ok") >= 3 and outcomes.count("error") >= 3, outcomes


def test_error_pickles_with_path_and_reason(tmp_path):
    import pickle

    err = pickle.loads(pickle.dumps(VideoDecodeError(tmp_path / "x.mp4", "video has no frames")))
    assert err.path == tmp_path / "x.mp4" and err.reason == "video has no frames"


def test_zero_length_reader_is_a_decode_error(good_video, monkeypatch):
    class EmptyReader:
        def __init__(self, *args, **kwargs):
            pass

        def __len__(self):
            return 0

    monkeypatch.setattr(decord, "VideoReader", EmptyReader)
    with pytest.raises(VideoDecodeError, match="video has no frames"):
        open_video(good_video, decoder="decord")


def _torchcodec_or_skip():
    from dear_ray.data.decode import DecoderUnavailableError, check_decoder

    try:
        check_decoder("torchcodec")
    except DecoderUnavailableError as exc:
        pytest.skip(f"torchcodec unavailable here: {exc}")


@pytest.mark.parametrize("name", ["v_good.mp4", "v_good.mkv", "v_good2.mp4"])
def test_torchcodec_reads_the_same_frames_as_decord(video_dir, name):
    _torchcodec_or_skip()
    path = video_dir / "good" / name
    reader = open_video(path, decoder="torchcodec")
    assert len(reader) == len(open_video(path))
    idx = np.array([0, 5, 3, 5, len(reader) - 1])  # any order, repeats
    frames = read_frames(path, idx, decoder="torchcodec")
    assert frames.dtype == np.uint8 and frames.flags.c_contiguous
    np.testing.assert_array_equal(frames, read_frames(path, idx))
    with pytest.raises(IndexError, match="max"):
        get_frames(reader, [len(reader)], path=path)


@pytest.mark.parametrize("name", BROKEN)
def test_torchcodec_broken_files_raise_video_decode_error(video_dir, name):
    _torchcodec_or_skip()
    path = video_dir / "bad" / name
    with pytest.raises(VideoDecodeError) as err:
        read_frames(path, [0], decoder="torchcodec")
    assert err.value.path == path and err.value.reason


def test_missing_torchcodec_is_not_a_bad_video(good_video, monkeypatch):
    import sys

    from dear_ray.data.decode import DecoderUnavailableError, check_decoder

    monkeypatch.setitem(sys.modules, "torchcodec.decoders", None)  # import fails
    with pytest.raises(DecoderUnavailableError, match="apt-get install libavcodec59"):
        open_video(good_video, decoder="torchcodec")
    with pytest.raises(DecoderUnavailableError, match="dear_ray.torchcodec. extra"):
        check_decoder("torchcodec")
    with pytest.raises(ValueError, match="unknown data.decoder 'av'"):
        open_video(good_video, decoder="av")


def test_distinct_frames_map_back_to_the_sampled_indices():
    from dear_ray.data.decode import distinct_frames

    distinct, frame_map = distinct_frames(np.array([4, 6, 8, 2, 4, 6]))
    np.testing.assert_array_equal(distinct, [2, 4, 6, 8])
    np.testing.assert_array_equal(frame_map, [1, 2, 3, 0, 1, 2])  # distinct[map] = the indices
    increasing, none = distinct_frames(np.array([0, 2, 4]))
    assert none is None and increasing.tolist() == [0, 2, 4]


def test_read_clip_decodes_each_distinct_frame_once_in_file_order(good_video, monkeypatch):
    import dear_ray.data.decode as decode_module
    from dear_ray.data.decode import read_clip

    asked = []
    real = decode_module.get_frames

    def spy(reader, indices, *, path):
        asked.append(list(indices))
        return real(reader, indices, path=path)

    monkeypatch.setattr(decode_module, "get_frames", spy)
    # 20 frames, 3 test clips of 4 frames at interval 4 (span 16): offsets int(5/6) = 0,
    # int(5/6 + 5/3) = 2, int(5/6 + 10/3) = 4: the clips overlap
    clip = read_clip(good_video, SampleFrames(4, 4, 3, test_mode=True), None)
    np.testing.assert_array_equal(clip.indices, [0, 4, 8, 12, 2, 6, 10, 14, 4, 8, 12, 16])
    assert asked == [[0, 2, 4, 6, 8, 10, 12, 14, 16]]  # nine frames decoded, not twelve
    np.testing.assert_array_equal(clip.frame_indices, asked[0])
    # bit for bit what the decoder gives for the sampled order (seeking back for each clip)
    reference = decord.VideoReader(str(good_video), num_threads=1).get_batch(
        clip.indices.tolist()).asnumpy()
    np.testing.assert_array_equal(clip.expanded(), reference)
    frames, idx = read_sampled_clip(good_video, SampleFrames(4, 4, 3, test_mode=True), None)
    np.testing.assert_array_equal(frames, reference)
