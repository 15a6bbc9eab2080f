"""`dear_ray.data.check`: good videos pass, missing/empty/corrupt ones are reported with reasons."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from dear_ray.data.annotations import AnnotationError
from dear_ray.data.check import check_video, check_videos


@pytest.fixture(scope="module")
def dataset(tmp_path_factory, make_video) -> tuple[Path, Path]:
    """A data root with 3 good videos (PyAV, h264), a random-bytes file, an empty file, a
    truncated copy and a missing entry; the list names them in that order."""
    root = tmp_path_factory.mktemp("check")
    make_video(root / "a" / "good1.mp4", num_frames=10, height=32, width=64)
    make_video(root / "a" / "good2.mp4", num_frames=6, height=32, width=64)
    make_video(root / "b" / "good3.mkv", num_frames=8, height=32, width=64)
    (root / "b" / "noise.mp4").write_bytes(np.random.default_rng(0).bytes(2048))
    (root / "b" / "empty.mp4").write_bytes(b"")
    data = (root / "a" / "good1.mp4").read_bytes()
    (root / "b" / "cut.mp4").write_bytes(data[: len(data) // 3])
    lst = root / "list.txt"
    lst.write_text("a/good1.mp4 0\n# a comment\na/good2.mp4 1\nb/good3.mkv 0\nb/noise.mp4 1\n"
                   "b/empty.mp4 0\nb/cut.mp4 1\nb/missing.mp4 0\n")
    return root, lst


EXPECTED_BAD = [("b/noise.mp4", 5, "cannot open"), ("b/empty.mp4", 6, "file is empty (0 bytes)"),
                ("b/cut.mp4", 7, ""), ("b/missing.mp4", 8, "file does not exist")]


def _check_report(report, root: Path, lst: Path) -> None:
    assert (report.list_file, report.total, report.num_ok, report.num_bad) == (lst, 7, 3, 4)
    assert [(b.path, b.line) for b in report.bad] == [
        ((root / rel).resolve(), line) for rel, line, _ in EXPECTED_BAD]
    for bad, (_, _, reason) in zip(report.bad, EXPECTED_BAD, strict=True):
        assert reason in bad.reason and bad.reason


def test_in_process_report_and_csv(dataset, tmp_path):
    root, lst = dataset
    report = check_videos(lst, root, workers=0, progress=False, csv_path=tmp_path / "bad.csv")
    _check_report(report, root, lst)
    with (tmp_path / "bad.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [(r["path"], r["line"]) for r in rows] == [
        (str((root / rel).resolve()), str(line)) for rel, line, _ in EXPECTED_BAD]
    text = report.format(max_rows=2)
    assert text.splitlines()[0] == f"{lst}: 7 videos, 3 ok, 4 bad"
    assert "... and 2 more" in text


def test_worker_processes_give_the_same_report(dataset, capsys):
    root, lst = dataset
    report = check_videos(lst, root, workers=2, progress=True)
    _check_report(report, root, lst)
    assert "checking list.txt" in capsys.readouterr().err  # the tqdm bar


def test_check_video_reads_first_and_last_frame(dataset):
    root, _ = dataset
    assert check_video(root / "a" / "good1.mp4", num_frames=10) is None
    assert check_video(root / "a" / "good2.mp4", num_frames=50) is None  # more than the video has
    assert check_video(root / "b" / "empty.mp4") == "file is empty (0 bytes)"


def test_malformed_list_raises_with_line(dataset, tmp_path):
    root, _ = dataset
    bad = tmp_path / "bad.txt"
    bad.write_text("a/good1.mp4 0\na/good2.mp4\n")
    with pytest.raises(AnnotationError, match=r"bad.txt:2: expected 'relative/path label'"):
        check_videos(bad, root, workers=0, progress=False)
