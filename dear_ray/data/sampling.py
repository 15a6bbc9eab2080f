"""Frame samplers with MMAction2 (v0.x) semantics.

Each sampler is called as ``sampler(num_frames, rng)`` and returns int64 0-based frame indices of
shape ``(num_views * clip_len,)``: the clips concatenated in order (clip-major). ``num_views`` is
the number of clips the index vector splits into (for `DenseSampleFrames` in test mode:
``num_sample_positions * num_clips``), ``clip_len`` the frames per clip.

- `SampleFrames` follows ``mmaction/datasets/pipelines/loading.py`` ``SampleFrames``: random clip
  offsets in training (``_get_train_clips``), evenly spaced clip centres in test mode
  (``_get_test_clips``), and out-of-bound indices either wrapped (``"loop"``) or replaced by the
  clip's last valid index (``"repeat_last"``). Videos shorter than a clip therefore loop or clamp.
- `DenseSampleFrames`: one start drawn in ``[0, num_frames - sample_range)`` (MMAction2's
  ``randint(0, sample_position - 1)``: the last start position is never drawn), clips
  ``sample_range // num_clips`` apart; in test mode ``num_sample_positions`` evenly spaced starts.
- `SegmentSampler`: TSN/TSM sampling, one frame per segment (MMAction2 ``SampleFrames(clip_len=1,
  num_clips=num_segments)``), or with ``dense=True`` the frames of dense TSM (MMAction2
  ``DenseSampleFrames(clip_len=1, num_clips=num_segments)``, DEAR's TSM); the frames of one view
  form ONE clip of ``num_segments`` frames.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

OUT_OF_BOUND_OPTIONS = ("loop", "repeat_last")


class FrameSampler(Protocol):
    """What the dataset needs from a sampler."""

    clip_len: int
    num_views: int

    def __call__(self, num_frames: int, rng: np.random.Generator) -> np.ndarray: ...


def _check_positive(**values: int) -> None:
    for name, value in values.items():
        if not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")


def _check_num_frames(num_frames: int) -> None:
    if num_frames < 1:
        raise ValueError(f"num_frames must be >= 1, got {num_frames}")


def _expand(offsets: np.ndarray, clip_len: int, frame_interval: int) -> np.ndarray:
    """Clip offsets (N,) -> frame indices (N, clip_len)."""
    offsets = np.asarray(offsets, dtype=np.int64)
    return offsets[:, None] + np.arange(clip_len, dtype=np.int64)[None, :] * frame_interval


def _bound(inds: np.ndarray, num_frames: int, option: str) -> np.ndarray:
    """Apply MMAction2's out_of_bound_opt to (N, clip_len) indices; returns them flattened."""
    if option == "loop":
        inds = np.mod(inds, num_frames)
    else:  # repeat_last: each clip's out-of-range frames repeat its last in-range index
        safe = inds < num_frames
        last = np.max(np.where(safe, inds, 0), axis=1, keepdims=True)
        inds = np.where(safe, inds, last)
    return inds.reshape(-1).astype(np.int64)


class SampleFrames:
    """MMAction2's ``SampleFrames``.

    Args:
        clip_len: frames per clip.
        frame_interval: temporal stride between sampled frames of a clip.
        num_clips: clips per video.
        test_mode: evenly spaced deterministic clips instead of random offsets.
        out_of_bound: ``"loop"`` (wrap modulo the length) or ``"repeat_last"``.
    """

    def __init__(
        self,
        clip_len: int,
        frame_interval: int = 1,
        num_clips: int = 1,
        *,
        test_mode: bool = False,
        out_of_bound: str = "loop",
    ) -> None:
        _check_positive(clip_len=clip_len, frame_interval=frame_interval, num_clips=num_clips)
        if out_of_bound not in OUT_OF_BOUND_OPTIONS:
            raise ValueError(f"out_of_bound must be one of {OUT_OF_BOUND_OPTIONS}, got {out_of_bound!r}")
        self.clip_len = clip_len
        self.frame_interval = frame_interval
        self.num_clips = num_clips
        self.test_mode = test_mode
        self.out_of_bound = out_of_bound

    @property
    def num_views(self) -> int:
        return self.num_clips

    def _train_offsets(self, num_frames: int, rng: np.random.Generator) -> np.ndarray:
        span = self.clip_len * self.frame_interval
        avg_interval = (num_frames - span + 1) // self.num_clips
        if avg_interval > 0:
            base = np.arange(self.num_clips) * avg_interval
            return base + rng.integers(avg_interval, size=self.num_clips)
        if num_frames > max(self.num_clips, span):
            return np.sort(rng.integers(num_frames - span + 1, size=self.num_clips))
        if avg_interval == 0:
            ratio = (num_frames - span + 1.0) / self.num_clips
            return np.around(np.arange(self.num_clips) * ratio)
        return np.zeros(self.num_clips, dtype=np.int64)

    def _test_offsets(self, num_frames: int) -> np.ndarray:
        span = self.clip_len * self.frame_interval
        if num_frames > span - 1:
            avg_interval = (num_frames - span + 1) / float(self.num_clips)
            return (np.arange(self.num_clips) * avg_interval + avg_interval / 2.0).astype(np.int64)
        return np.zeros(self.num_clips, dtype=np.int64)

    def __call__(self, num_frames: int, rng: np.random.Generator) -> np.ndarray:
        """Frame indices (num_clips * clip_len,) for a video of `num_frames` frames."""
        _check_num_frames(num_frames)
        if self.test_mode:
            offsets = self._test_offsets(num_frames)
        else:
            offsets = self._train_offsets(num_frames, rng)
        inds = _expand(offsets, self.clip_len, self.frame_interval)
        return _bound(inds, num_frames, self.out_of_bound)

    def __repr__(self) -> str:
        return (
            f"SampleFrames(clip_len={self.clip_len}, frame_interval={self.frame_interval}, "
            f"num_clips={self.num_clips}, test_mode={self.test_mode}, "
            f"out_of_bound={self.out_of_bound!r})"
        )


class DenseSampleFrames(SampleFrames):
    """MMAction2's ``DenseSampleFrames`` (dense sampling within a window of `sample_range` frames).

    Args:
        clip_len: frames per clip.
        frame_interval: temporal stride between sampled frames of a clip.
        num_clips: clips per start position.
        sample_range: length of the window the clips are spread over.
        num_sample_positions: test mode only: evenly spaced window starts (each gives `num_clips`
            clips, so ``num_views = num_sample_positions * num_clips``).
        test_mode: evenly spaced starts instead of one random start.
        out_of_bound: ``"loop"`` or ``"repeat_last"``.
    """

    def __init__(
        self,
        clip_len: int,
        frame_interval: int = 1,
        num_clips: int = 1,
        *,
        sample_range: int = 64,
        num_sample_positions: int = 10,
        test_mode: bool = False,
        out_of_bound: str = "loop",
    ) -> None:
        super().__init__(
            clip_len, frame_interval, num_clips, test_mode=test_mode, out_of_bound=out_of_bound
        )
        _check_positive(sample_range=sample_range, num_sample_positions=num_sample_positions)
        self.sample_range = sample_range
        self.num_sample_positions = num_sample_positions

    @property
    def num_views(self) -> int:
        return self.num_clips * (self.num_sample_positions if self.test_mode else 1)

    def _train_offsets(self, num_frames: int, rng: np.random.Generator) -> np.ndarray:
        positions = max(1, 1 + num_frames - self.sample_range)
        interval = self.sample_range // self.num_clips
        start = 0 if positions == 1 else int(rng.integers(0, positions - 1))
        return (np.arange(self.num_clips) * interval + start) % num_frames

    def _test_offsets(self, num_frames: int) -> np.ndarray:
        positions = max(1, 1 + num_frames - self.sample_range)
        interval = self.sample_range // self.num_clips
        starts = np.linspace(0, positions - 1, num=self.num_sample_positions, dtype=int)
        base = np.arange(self.num_clips) * interval
        return ((starts[:, None] + base[None, :]) % num_frames).reshape(-1)

    def __repr__(self) -> str:
        return (
            f"DenseSampleFrames(clip_len={self.clip_len}, frame_interval={self.frame_interval}, "
            f"num_clips={self.num_clips}, sample_range={self.sample_range}, "
            f"num_sample_positions={self.num_sample_positions}, test_mode={self.test_mode}, "
            f"out_of_bound={self.out_of_bound!r})"
        )


class SegmentSampler:
    """TSN/TSM sampling: `num_segments` frames forming one clip (``clip_len = num_segments``).

    Uniform (default): one frame from each of `num_segments` equal segments, a random frame of
    each in training and the segment's centre in test mode (MMAction2 ``SampleFrames(clip_len=1,
    frame_interval=1, num_clips=num_segments)``).

    Dense (``dense=True``, DEAR's TSM and MMAction2's ``tsm_r50_dense`` configs, training and
    test): ``DenseSampleFrames(clip_len=1, frame_interval=1, num_clips=num_segments,
    sample_range, num_sample_positions=num_positions)``: `num_segments` frames
    ``sample_range // num_segments`` apart inside a window of `sample_range` frames, the window at
    a random start in training and at `num_positions` evenly spaced starts in test mode (offsets
    modulo the video length).

    `num_positions` > 1 (test mode only) always gives those dense windows, one view a window
    (``num_views = num_positions``), also for the uniform mode (whose training is unchanged).
    """

    def __init__(self, num_segments: int, *, test_mode: bool = False, num_positions: int = 1,
                 sample_range: int = 64, dense: bool = False) -> None:
        _check_positive(num_segments=num_segments, num_positions=num_positions,
                        sample_range=sample_range)
        if num_positions > 1 and not test_mode:
            raise ValueError(f"SegmentSampler: num_positions={num_positions} is a test-mode "
                             "setting; training takes one clip a video")
        windows = dense or num_positions > 1
        if windows and sample_range < num_segments:
            raise ValueError(f"SegmentSampler: sample_range={sample_range} is smaller than "
                             f"num_segments={num_segments}: the frames of a window would repeat")
        if windows:
            self._inner = DenseSampleFrames(1, 1, num_segments, sample_range=sample_range,
                                            num_sample_positions=num_positions,
                                            test_mode=test_mode)
        else:
            self._inner = SampleFrames(1, 1, num_segments, test_mode=test_mode)
        self.clip_len = num_segments
        self.num_segments = num_segments
        self.num_positions = num_positions
        self.sample_range = sample_range
        self.dense = dense
        self.test_mode = test_mode

    @property
    def num_views(self) -> int:
        return self.num_positions

    def __call__(self, num_frames: int, rng: np.random.Generator) -> np.ndarray:
        """Frame indices (num_positions * num_segments,), view by view."""
        return self._inner(num_frames, rng)

    def __repr__(self) -> str:
        return (f"SegmentSampler(num_segments={self.num_segments}, test_mode={self.test_mode}, "
                f"num_positions={self.num_positions}, sample_range={self.sample_range}, "
                f"dense={self.dense})")
