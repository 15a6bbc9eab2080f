"""Check that every video of an annotation list opens and decodes, before a long training run.

    report = check_videos("lists/ucf101_train_split_1_videos.txt", "/data", workers=2)
    print(report.format())
    report.to_csv("bad_videos.csv")

Each video is opened with decord and `num_frames` frames spread over its length (first and last
included) are decoded, through `dear_ray.data.decode`, so a file that passes here also opens in
training. Videos are checked by a pool of `workers` threads (decord releases the GIL while it
decodes: 2 threads checked 12 h264 320x240 videos 1.4-2.9x faster than one, on 2 cores), with a
tqdm progress bar.
Some corrupt files decode into damaged pixels without any error (about 15% of the corrupted files
tried with decord 0.6); no check of
this kind can find those.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from dear_ray.data.annotations import read_annotation_list


@dataclass(frozen=True)
class BadVideo:
    """A listed video that cannot be decoded.

    Attributes:
        path: the video file.
        reason: why, in words (the decoder's message shortened to one line).
        line: the 1-based line of the list file.
    """

    path: Path
    reason: str
    line: int


@dataclass
class CheckReport:
    """What `check_videos` found: counts and the bad files, in list order."""

    list_file: Path
    total: int
    bad: list[BadVideo] = field(default_factory=list)

    @property
    def num_bad(self) -> int:
        return len(self.bad)

    @property
    def num_ok(self) -> int:
        return self.total - len(self.bad)

    def format(self, max_rows: int = 20) -> str:
        """A summary line, then up to `max_rows` bad files as `path: reason (line n)`."""
        lines = [f"{self.list_file}: {self.total} videos, {self.num_ok} ok, {self.num_bad} bad"]
        lines += [f"  {b.path}: {b.reason} (line {b.line})" for b in self.bad[:max_rows]]
        if self.num_bad > max_rows:
            lines.append(f"  ... and {self.num_bad - max_rows} more (write them with to_csv)")
        return "\n".join(lines)

    def to_csv(self, path: str | os.PathLike) -> Path:
        """Write the bad files as CSV with columns `path,reason,line`; returns the path."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(["path", "reason", "line"])
            writer.writerows([str(b.path), b.reason, b.line] for b in self.bad)
        return path


def check_video(path: str | os.PathLike, num_frames: int = 3) -> str | None:
    """Open a video and decode `num_frames` evenly spaced frames (first and last included).

    Returns:
        None if the video decodes, else the reason it does not.
    """
    from dear_ray.data.decode import VideoDecodeError, get_frames, open_video

    try:
        reader = open_video(path)
        n = len(reader)
        indices = np.unique(np.linspace(0, n - 1, max(1, min(num_frames, n))).round().astype(int))
        get_frames(reader, indices, path=path)
    except VideoDecodeError as err:
        return err.reason
    return None


def check_videos(list_file: str | os.PathLike, data_root: str | os.PathLike, *, workers: int = 2,
                 progress: bool = True, num_frames: int = 3,
                 csv_path: str | os.PathLike | None = None,
                 num_classes: int | None = None) -> CheckReport:
    """Decode every video of an annotation list; collect the ones that fail.

    Args:
        list_file: an MMAction2 list (`dear_ray.data.annotations` format).
        data_root: the folder the list's relative paths are resolved under.
        workers: decoding threads; 0 or 1 checks in the calling thread.
        progress: show a tqdm progress bar (on stderr).
        num_frames: frames decoded per video, spread over its length.
        csv_path: when given, the bad files are also written there (`CheckReport.to_csv`).
        num_classes: K: labels must lie in [0, K) (the list names the line of one that does
            not); None checks no range (an unknown set's own class ids).

    Returns:
        A `CheckReport`; missing files are reported as bad, not raised.

    Raises:
        AnnotationError: the list itself is malformed, or a label is out of range (names the file
            and line).
        FileNotFoundError: the list file does not exist.
    """
    records = read_annotation_list(list_file, data_root, num_classes=num_classes,
                                   check_exists=False)
    paths = [str(r.path) for r in records]
    bar = tqdm(total=len(paths), desc=f"checking {Path(list_file).name}", unit="video",
               disable=not progress)
    reasons: list[str | None] = []
    with bar:
        for reason in _run(paths, num_frames, workers):
            reasons.append(reason)
            bar.update(1)
    report = CheckReport(Path(list_file), len(records), [
        BadVideo(r.path, reason, r.line) for r, reason in zip(records, reasons, strict=True)
        if reason is not None])
    if csv_path is not None:
        report.to_csv(csv_path)
    return report


def _run(paths: list[str], num_frames: int, workers: int) -> Iterator[str | None]:
    """`check_video` of each path, in order."""
    if workers <= 1 or len(paths) <= 1:
        yield from (check_video(p, num_frames) for p in paths)
        return
    with ThreadPoolExecutor(max_workers=workers) as pool:
        yield from pool.map(lambda p: check_video(p, num_frames), paths)
