"""Sampled indices against hand-computed MMAction2 (v0.x) cases."""

import numpy as np
import pytest

from dear_ray.data.sampling import DenseSampleFrames, SampleFrames, SegmentSampler


class ScriptedRng:
    """Stands in for np.random.Generator.integers: returns scripted draws, records the bounds."""

    def __init__(self, *draws):
        self.draws = list(draws)
        self.calls = []

    def integers(self, low, high=None, size=None):
        self.calls.append((low, high, size))
        value = self.draws.pop(0)
        return np.asarray(value) if size is not None else value


def test_test_mode_single_clip_is_centred():
    # span 8, avg_interval = (20 - 8 + 1) / 1 = 13, offset int(6.5) = 6
    s = SampleFrames(4, 2, 1, test_mode=True)
    np.testing.assert_array_equal(s(20, None), [6, 8, 10, 12])


def test_test_mode_three_clips_evenly_spaced():
    # avg 13/3: offsets int(2.17)=2, int(6.5)=6, int(10.83)=10
    s = SampleFrames(4, 2, 3, test_mode=True)
    np.testing.assert_array_equal(s(20, None), [2, 4, 6, 8, 6, 8, 10, 12, 10, 12, 14, 16])
    assert s.num_views == 3


@pytest.mark.parametrize("mode, expected", [("loop", [0, 2, 4, 1]), ("repeat_last", [0, 2, 4, 4])])
def test_short_video_loops_or_repeats_last(mode, expected):
    # 5 frames < span 8: offset 0, indices 0 2 4 6; 6 is out of bounds
    for test_mode in (True, False):
        s = SampleFrames(4, 2, 1, test_mode=test_mode, out_of_bound=mode)
        np.testing.assert_array_equal(s(5, np.random.default_rng(0)), expected)


def test_repeat_last_is_per_clip():
    # 3 frames, two clips of 0 2 4 6, avg_interval (3-8+1)//2 = -2 -> zero offsets
    s = SampleFrames(4, 2, 2, out_of_bound="repeat_last")
    np.testing.assert_array_equal(s(3, np.random.default_rng(0)), [0, 2, 2, 2, 0, 2, 2, 2])
    s = SampleFrames(4, 2, 2, out_of_bound="loop")
    np.testing.assert_array_equal(s(3, np.random.default_rng(0)), [0, 2, 1, 0, 0, 2, 1, 0])


def test_train_random_offsets_within_avg_interval():
    # avg_interval = (20 - 8 + 1) // 2 = 6, base 0 6, draws 5 1 -> offsets 5 7
    rng = ScriptedRng([5, 1])
    s = SampleFrames(4, 2, 2)
    np.testing.assert_array_equal(s(20, rng), [5, 7, 9, 11, 7, 9, 11, 13])
    assert rng.calls == [(6, None, 2)]


def test_train_sorted_offsets_when_avg_interval_is_zero_but_video_long_enough():
    # 9 frames, span 8, 3 clips: avg 2//3 = 0, 9 > max(3, 8): sorted draws from [0, 2)
    rng = ScriptedRng([1, 0, 1])
    s = SampleFrames(4, 2, 3)
    np.testing.assert_array_equal(s(9, rng), [0, 2, 4, 6, 1, 3, 5, 7, 1, 3, 5, 7])
    assert rng.calls == [(2, None, 3)]


def test_train_rounded_ratio_offsets():
    # 8 frames, span 8, 3 clips: avg 0, not > 8: offsets around([0, 1/3, 2/3]) = 0 0 1
    s = SampleFrames(4, 2, 3)
    np.testing.assert_array_equal(s(8, ScriptedRng()), [0, 2, 4, 6, 0, 2, 4, 6, 1, 3, 5, 7])


def test_i3d_sampling_loops_on_a_short_video():
    s = SampleFrames(32, 2, 1)
    np.testing.assert_array_equal(s(64, np.random.default_rng(3)), np.arange(0, 64, 2))
    expected = np.r_[0:30:2, 0:30:2, 0, 2]  # 30 frames: k*2 mod 30 for k < 32
    np.testing.assert_array_equal(s(30, np.random.default_rng(3)), expected)


def test_indices_always_in_range_and_reproducible():
    for sampler in [
        SampleFrames(8, 4, 2),
        SampleFrames(8, 4, 2, test_mode=True, out_of_bound="repeat_last"),
        DenseSampleFrames(4, 2, 2, sample_range=16),
        SegmentSampler(8),
    ]:
        for n in range(1, 70):
            a = sampler(n, np.random.default_rng(n))
            assert a.dtype == np.int64 and a.shape == (sampler.num_views * sampler.clip_len,)
            assert a.min() >= 0 and a.max() < n
            np.testing.assert_array_equal(a, sampler(n, np.random.default_rng(n)))


def test_dense_train():
    # positions = 1 + 40 - 16 = 25, start drawn from [0, 24)
    rng = ScriptedRng(7)
    s = DenseSampleFrames(4, 2, 1, sample_range=16)
    np.testing.assert_array_equal(s(40, rng), [7, 9, 11, 13])
    assert rng.calls == [(0, 24, None)]
    # video shorter than the range: start 0
    np.testing.assert_array_equal(s(10, ScriptedRng()), [0, 2, 4, 6])
    # two clips 8 apart, offsets mod 10, frames loop
    s2 = DenseSampleFrames(4, 1, 2, sample_range=16)
    np.testing.assert_array_equal(s2(10, ScriptedRng()), [0, 1, 2, 3, 8, 9, 0, 1])


def test_dense_test_positions():
    s = DenseSampleFrames(4, 2, 1, sample_range=16, num_sample_positions=3, test_mode=True)
    # starts linspace(0, 24, 3) = 0 12 24
    np.testing.assert_array_equal(s(40, None), [0, 2, 4, 6, 12, 14, 16, 18, 24, 26, 28, 30])
    assert s.num_views == 3
    s = DenseSampleFrames(2, 1, 2, sample_range=16, num_sample_positions=2, test_mode=True)
    # positions 5, interval 8, starts 0 4: clip offsets 0 8 4 12
    np.testing.assert_array_equal(s(20, None), [0, 1, 8, 9, 4, 5, 12, 13])
    assert s.num_views == 4


def test_segments_test_mode_centres():
    s = SegmentSampler(8, test_mode=True)
    np.testing.assert_array_equal(s(80, None), [5, 15, 25, 35, 45, 55, 65, 75])
    # avg 1.5: int(0.75 + 1.5 k)
    np.testing.assert_array_equal(s(12, None), [0, 2, 3, 5, 6, 8, 9, 11])
    # fewer frames than segments: avg 0.625
    np.testing.assert_array_equal(s(5, None), [0, 0, 1, 2, 2, 3, 4, 4])
    assert (s.clip_len, s.num_views) == (8, 1)


def test_segments_dense_test_positions():
    # DEAR's TSM test: 8 frames 64 // 8 = 8 apart in a 64-frame window, at 10 window starts
    s = SegmentSampler(8, test_mode=True, num_positions=10, sample_range=64)
    views = s(100, None).reshape(10, 8)
    starts = [0, 4, 8, 12, 16, 20, 24, 28, 32, 36]  # linspace(0, 100 - 64, 10) as ints
    np.testing.assert_array_equal(views, np.array(starts)[:, None] + np.arange(0, 64, 8))
    assert (s.clip_len, s.num_views) == (8, 10)
    # smaller numbers by hand: 4 segments, window 32 (stride 8), 3 positions over 69 starts
    small = SegmentSampler(4, test_mode=True, num_positions=3, sample_range=32)
    np.testing.assert_array_equal(small(100, None), [0, 8, 16, 24, 34, 42, 50, 58, 68, 76, 84, 92])
    # a video shorter than the window: every position starts at 0 and offsets wrap around
    np.testing.assert_array_equal(small(20, None), [0, 8, 16, 4, 0, 8, 16, 4, 0, 8, 16, 4])
    with pytest.raises(ValueError, match="test-mode setting"):
        SegmentSampler(8, num_positions=2)
    with pytest.raises(ValueError, match="sample_range=4 is smaller than num_segments=8"):
        SegmentSampler(8, test_mode=True, num_positions=2, sample_range=4)


def test_segments_dense_training_window():
    # DEAR's TSM training, DenseSampleFrames(clip_len=1, num_clips=8): a random start in
    # [0, 300 - 64) (randint(0, 236) draws 0..235), then 8 frames 8 apart
    rng = ScriptedRng(100)
    s = SegmentSampler(8, dense=True, sample_range=64)
    np.testing.assert_array_equal(s(300, rng), [100, 108, 116, 124, 132, 140, 148, 156])
    assert rng.calls == [(0, 236, None)] and (s.clip_len, s.num_views) == (8, 1)
    # 4 segments in a 32-frame window: stride 8; a 20-frame video has one start (0) and wraps
    small = SegmentSampler(4, dense=True, sample_range=32)
    np.testing.assert_array_equal(small(100, ScriptedRng(5)), [5, 13, 21, 29])
    np.testing.assert_array_equal(small(20, ScriptedRng()), [0, 8, 16, 4])
    # test mode with one position: the window at the start (linspace(0, 68, 1) = [0]), where the
    # uniform sampler takes the segment centres
    np.testing.assert_array_equal(SegmentSampler(4, dense=True, sample_range=32,
                                                 test_mode=True)(100, None), [0, 8, 16, 24])
    np.testing.assert_array_equal(SegmentSampler(4, test_mode=True)(100, None), [12, 37, 62, 87])
    with pytest.raises(ValueError, match="sample_range=4 is smaller than num_segments=8"):
        SegmentSampler(8, dense=True, sample_range=4)


def test_segments_train():
    rng = ScriptedRng([0, 9, 1, 8, 2, 7, 3, 6])
    s = SegmentSampler(8)
    np.testing.assert_array_equal(s(80, rng), [0, 19, 21, 38, 42, 57, 63, 76])
    assert rng.calls == [(10, None, 8)]
    # 5 frames: around(k * 0.625), numpy rounds 2.5 to 2
    np.testing.assert_array_equal(s(5, ScriptedRng()), [0, 1, 1, 2, 2, 3, 4, 4])


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: SampleFrames(0), "clip_len must be a positive integer"),
        (lambda: SampleFrames(4, 0), "frame_interval"),
        (lambda: SampleFrames(4, num_clips=-1), "num_clips"),
        (lambda: SampleFrames(4, out_of_bound="clamp"), "out_of_bound must be one of"),
        (lambda: DenseSampleFrames(4, sample_range=0), "sample_range"),
        (lambda: SegmentSampler(0), "num_segments"),
    ],
)
def test_bad_arguments(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_zero_frames_rejected():
    with pytest.raises(ValueError, match="num_frames must be >= 1, got 0"):
        SampleFrames(4)(0, np.random.default_rng(0))
