"""Annotation lists in the MMAction2 format and class-name files.

A list file has one video a line, resolved under a data root::

    class_a/v_001.mp4 3            # relative/path.ext label
    class_a/v_002.mp4 120 3        # relative/path.ext num_frames label

Blank lines and lines starting with ``#`` are skipped. Labels are 0-based. Every problem raises
`AnnotationError` naming the list file and the 1-based line number.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path, PurePosixPath, PureWindowsPath


class AnnotationError(ValueError):
    """A malformed annotation list or class-name file; the message names the file and line."""


@dataclass(frozen=True)
class VideoRecord:
    """One line of an annotation list.

    Attributes:
        path: absolute path of the video (data root joined with the relative path).
        label: 0-based class index.
        video_id: the file stem, the key of SDN's side-input dicts.
        num_frames: the frame count written in the list, or None (the decoder's count is used).
        line: 1-based line number in the list file.
    """

    path: Path
    label: int
    video_id: str
    num_frames: int | None
    line: int


def _parse_int(text: str, what: str, where: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise AnnotationError(f"{where}: {what} {text!r} is not an integer") from None


def _resolve(rel: str, root: Path, where: str) -> Path:
    if PurePosixPath(rel).is_absolute() or PureWindowsPath(rel).is_absolute():
        raise AnnotationError(f"{where}: path {rel!r} is absolute; expected a path relative to {root}")
    if ".." in PurePosixPath(rel.replace("\\", "/")).parts:
        raise AnnotationError(f"{where}: path {rel!r} contains '..'; it must stay under {root}")
    return root / rel


def read_annotation_list(
    list_file: str | Path,
    data_root: str | Path,
    *,
    num_classes: int | None = None,
    check_exists: bool = True,
) -> list[VideoRecord]:
    """Read an MMAction2 video list.

    Args:
        list_file: the annotation list.
        data_root: the folder the relative paths are resolved under (made absolute).
        num_classes: when given, every label must lie in ``[0, num_classes)``.
        check_exists: raise if a listed video file does not exist.

    Returns:
        One `VideoRecord` per non-blank, non-comment line, in file order.

    Raises:
        AnnotationError: malformed line, absolute path or ``..``, missing file, non-integer or
            out-of-range label, non-positive frame count; names the file and the 1-based line.
        FileNotFoundError: the list file itself does not exist.
    """
    list_file = Path(list_file)
    root = Path(data_root).resolve()
    if not list_file.is_file():
        raise FileNotFoundError(f"annotation list {list_file} does not exist")
    records: list[VideoRecord] = []
    for lineno, raw in enumerate(list_file.read_text(encoding="utf-8").splitlines(), start=1):
        text = raw.strip()
        if not text or text.startswith("#"):
            continue
        where = f"{list_file}:{lineno}"
        fields = text.split()
        if len(fields) not in (2, 3):
            raise AnnotationError(
                f"{where}: expected 'relative/path label' or 'relative/path num_frames label', "
                f"got {len(fields)} fields: {text!r}"
            )
        path = _resolve(fields[0], root, where)
        label = _parse_int(fields[-1], "label", where)
        num_frames = None
        if len(fields) == 3:
            num_frames = _parse_int(fields[1], "num_frames", where)
            if num_frames <= 0:
                raise AnnotationError(f"{where}: num_frames {num_frames} must be positive")
        if label < 0 or (num_classes is not None and label >= num_classes):
            allowed = f"[0, {num_classes})" if num_classes is not None else ">= 0"
            raise AnnotationError(f"{where}: label {label} is out of range; expected {allowed}")
        if check_exists and not path.is_file():
            raise AnnotationError(f"{where}: video file {path} does not exist")
        records.append(VideoRecord(path, label, Path(fields[0]).stem, num_frames, lineno))
    return records


def read_class_names(path: str | Path) -> list[str]:
    """Read a class-name file: one name a line, line i (0-based, blank lines excluded) = label i.

    Raises:
        AnnotationError: a name appears twice (names the file and both lines) or the file is empty.
    """
    path = Path(path)
    names: list[str] = []
    seen: dict[str, int] = {}
    for lineno, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        name = raw.strip()
        if not name:
            continue
        if name in seen:
            raise AnnotationError(
                f"{path}:{lineno}: class name {name!r} already given on line {seen[name]}"
            )
        seen[name] = lineno
        names.append(name)
    if not names:
        raise AnnotationError(f"{path}: no class names found")
    return names
