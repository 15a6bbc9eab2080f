from pathlib import Path

import pytest

from dear_ray.data.annotations import AnnotationError, read_annotation_list, read_class_names


@pytest.fixture()
def root(tmp_path: Path) -> Path:
    for rel in ["a/x.mp4", "a/y.mp4", "b/z.avi"]:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"")
    return tmp_path


def write_list(root: Path, text: str) -> Path:
    path = root / "list.txt"
    path.write_text(text)
    return path


def test_reads_both_formats_skipping_blanks_and_comments(root):
    lst = write_list(root, "# header\na/x.mp4 0\n\n   \nb/z.avi 120 2\n  a/y.mp4   1  \n")
    recs = read_annotation_list(lst, root, num_classes=3)
    assert [(r.label, r.video_id, r.num_frames, r.line) for r in recs] == [
        (0, "x", None, 2),
        (2, "z", 120, 5),
        (1, "y", None, 6),
    ]
    assert recs[1].path == (root / "b" / "z.avi").resolve()
    assert all(r.path.is_absolute() for r in recs)


@pytest.mark.parametrize(
    "line, message",
    [
        ("/abs/x.mp4 0", "is absolute"),
        ("a/../../etc/x.mp4 0", "'..'"),
        ("a/missing.mp4 0", "does not exist"),
        ("a/x.mp4 zero", "label 'zero' is not an integer"),
        ("a/x.mp4 1.5", "label '1.5' is not an integer"),
        ("a/x.mp4 3", "label 3 is out of range; expected [0, 3)"),
        ("a/x.mp4 -1", "label -1 is out of range"),
        ("a/x.mp4 ten 1", "num_frames 'ten' is not an integer"),
        ("a/x.mp4 0 1", "num_frames 0 must be positive"),
        ("a/x.mp4", "got 1 fields"),
        ("a/x.mp4 1 2 3", "got 4 fields"),
    ],
)
def test_each_error_names_file_and_line(root, line, message):
    lst = write_list(root, f"a/y.mp4 0\n# comment\n{line}\n")
    with pytest.raises(AnnotationError) as err:
        read_annotation_list(lst, root, num_classes=3)
    assert f"{lst}:3:" in str(err.value)
    assert message in str(err.value)


def test_missing_files_allowed_without_check(root):
    lst = write_list(root, "a/missing.mp4 1\n")
    (rec,) = read_annotation_list(lst, root, check_exists=False)
    assert rec.path == (root / "a" / "missing.mp4").resolve() and rec.label == 1


def test_missing_list_file(root):
    with pytest.raises(FileNotFoundError, match="nope.txt"):
        read_annotation_list(root / "nope.txt", root)


def test_class_names(tmp_path):
    path = tmp_path / "classes.txt"
    path.write_text("walk\nrun\n\njump\n")
    assert read_class_names(path) == ["walk", "run", "jump"]
    path.write_text("walk\nrun\nwalk\n")
    with pytest.raises(AnnotationError, match=r"classes.txt:3: class name 'walk' already given on line 1"):
        read_class_names(path)
    path.write_text("\n")
    with pytest.raises(AnnotationError, match="no class names"):
        read_class_names(path)
