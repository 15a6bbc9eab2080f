"""The videos a run skipped, and why: `<run_dir>/<name>/bad_videos/<trial>/*.csv`, MLflow artifacts.

A video that cannot be decoded is skipped (`dear_ray.data.dataset.BadSample`) and counted in the
epoch's `bad_videos` metric; this module keeps the list itself, one CSV row per skipped video and
occasion, with the columns `split, epoch, rank, index, video_id, path, reason`. Training writes
`train_rank<r>.csv` (each rank its own shard), evaluation `eval.csv` (rank 0, every split after
the shards are merged); the driver logs the folder into the run's `bad_videos/` artifacts at the
end of the run.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable
from pathlib import Path

COLUMNS = ("split", "epoch", "rank", "index", "video_id", "path", "reason")


def bad_videos_dir(run_root: Path, trial: str) -> Path:
    """The folder of one trial's bad-video lists."""
    return Path(run_root) / "bad_videos" / trial


def append_bad_videos(path: Path, bad: Iterable, *, split: str, epoch: int | None,
                      rank: int) -> int:
    """Append `bad` (`BadSample`s) to the CSV at `path` (header written once); the rows added."""
    rows = [(split, "" if epoch is None else epoch, rank, b.index, b.video_id, b.path,
             " ".join(str(b.reason).split())) for b in bad]
    if not rows:
        return 0
    path.parent.mkdir(parents=True, exist_ok=True)
    new = not path.exists()
    with path.open("a", newline="") as fh:
        writer = csv.writer(fh)
        if new:
            writer.writerow(COLUMNS)
        writer.writerows(rows)
    return len(rows)


def describe_failure(err: BaseException, run_root: Path | None, trial: str) -> str:
    """The one line a failed run is reported by (`dear_ray.tracking.console.error_summary`),
    plus where its list of skipped videos is when it wrote one (a run that stopped because too
    many videos could not be decoded)."""
    from dear_ray.tracking.console import error_summary

    line = error_summary(err)
    if run_root is not None:
        folder = bad_videos_dir(run_root, trial)
        if folder.is_dir() and any(folder.glob("*.csv")):
            line += f" (the videos: {folder})"
    return line


def skipped_videos_line(run_root: Path, trial: str) -> str | None:
    """`N videos could not be decoded and were skipped (train: 3, test: 1); list: DIR`, or None
    when the run skipped none."""
    folder = bad_videos_dir(run_root, trial)
    rows = read_bad_videos(folder)
    if not rows:
        return None
    by_split: dict[str, set[str]] = {}
    for row in rows:
        by_split.setdefault(row["split"], set()).add(row["path"])
    videos = len({row["path"] for row in rows})
    splits = ", ".join(f"{split}: {len(paths)}" for split, paths in by_split.items())
    return (f"{videos} video(s) could not be decoded and were skipped ({splits}); the list: "
            f"{folder}")


def read_bad_videos(folder: Path) -> list[dict[str, str]]:
    """Every row of the CSVs in `folder` (empty when there is none)."""
    out = []
    for path in sorted(Path(folder).glob("*.csv")):
        with path.open(newline="") as fh:
            out.extend(csv.DictReader(fh))
    return out


__all__ = ["COLUMNS", "append_bad_videos", "bad_videos_dir", "describe_failure",
           "read_bad_videos", "skipped_videos_line"]
