"""What the list builders share: the error type, the registry, reading official files and
writing MMAction2 lists."""

from __future__ import annotations

import csv
import json
import os
import re
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from dear_ray.registry import Registry

PathLike = str | os.PathLike


class ListBuildError(ValueError):
    """A malformed official annotation file; the message names the file and line (or entry)."""


@dataclass(frozen=True)
class _Entry:
    rel: str  # path under the split's video folder, '/'-separated
    label: int
    where: str  # "file:line" of the annotation it came from


DATASETS: Registry[Callable[..., dict[str, Path]]] = Registry("dataset")



def _check_split(split: int, allowed: Sequence[int], dataset: str) -> None:
    if split not in allowed:
        raise ValueError(f"{dataset}: split {split!r}; this data set has split(s) "
                         f"{', '.join(map(str, allowed))}")


def _find(root: Path, candidates: Iterable[str], what: str) -> Path:
    tried = [root / c for c in candidates]
    for path in tried:
        if path.is_file():
            return path
    raise FileNotFoundError(f"{what} not found; looked for {', '.join(map(str, tried))}")


def _folder(root: Path, given: PathLike | None, candidates: Sequence[str], marker: str) -> Path:
    """`given`, else the first candidate folder under `root` holding `marker` (a name or glob)."""
    if given is not None:
        return Path(given)
    for c in candidates:
        if any((root / c).glob(marker)):
            return root / c
    raise FileNotFoundError(f"{marker} not found in any of "
                            f"{', '.join(str(root / c) for c in candidates)}")


def _videos(root: Path, given: PathLike | None, candidates: Sequence[str]) -> Path:
    """`given`, else the first existing candidate folder (the first one if none exists yet)."""
    if given is not None:
        return Path(given)
    for c in candidates:
        if (root / c).is_dir():
            return root / c
    return root / candidates[0]


def _require(path: Path, what: str) -> Path:
    if not path.is_file():
        raise FileNotFoundError(f"{what} file {path} does not exist")
    return path


def _lines(path: Path) -> Iterable[tuple[int, list[str]]]:
    """(1-based line number, whitespace-split fields) of the non-blank lines (CRLF or LF)."""
    text = path.read_text(encoding="utf-8-sig")
    for lineno, line in enumerate(text.splitlines(), start=1):
        if line.strip():
            yield lineno, line.split()


def _csv_rows(path: Path) -> Iterable[tuple[int, list[str]]]:
    with path.open(newline="", encoding="utf-8-sig") as f:
        for lineno, row in enumerate(csv.reader(f), start=1):
            if any(cell.strip() for cell in row):
                yield lineno, [cell.strip() for cell in row]


def _load_json(path: Path):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ListBuildError(f"{path}:{err.lineno}: not valid JSON: {err.msg}") from None


def _int(text: str, what: str, where: str, *, as_float: bool = False) -> int:
    try:
        return int(float(text)) if as_float else int(text)
    except (TypeError, ValueError):
        raise ListBuildError(f"{where}: {what} {text!r} is not a number") from None


def _mapping(names: list[str], source: Path) -> dict[str, int]:
    mapping: dict[str, int] = {}
    for i, name in enumerate(names):
        if name in mapping:
            raise ListBuildError(f"{source}: class {name!r} appears twice")
        mapping[name] = i
    return mapping


def _label_of_folder(rel: str, mapping: dict[str, int], where: str, class_file: Path) -> int:
    folder = rel.split("/")[0] if "/" in rel else ""
    if folder not in mapping:
        raise ListBuildError(f"{where}: video {rel!r} is not in a class folder listed in "
                             f"{class_file}")
    return mapping[folder]


def _write_all(out_dir: PathLike, prefix: str, tag: str, names: list[str],
               train: tuple[list[_Entry], Path], test: tuple[list[_Entry], Path],
               relative_to: PathLike | None, skip_missing: bool) -> dict[str, Path]:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"train": out_dir / f"{prefix}_train_{tag}_videos.txt",
             "test": out_dir / f"{prefix}_val_{tag}_videos.txt",
             "classes": out_dir / f"{prefix}_classes.txt"}
    for key, (entries, videos) in (("train", train), ("test", test)):
        _write_list(paths[key], entries, videos, relative_to, skip_missing, key)
    paths["classes"].write_text("".join(f"{n}\n" for n in names), encoding="utf-8")
    return paths


def _write_list(path: Path, entries: list[_Entry], videos: Path, relative_to: PathLike | None,
                skip_missing: bool, split: str) -> None:
    base = Path(relative_to).absolute() if relative_to is not None else None
    videos = videos.absolute()
    if base is not None and not videos.is_relative_to(base):
        raise ValueError(f"video folder {videos} is not under relative_to {base}")
    lead = videos.relative_to(base).as_posix() if base is not None else "."
    lines, missing = [], []
    for e in entries:
        if re.search(r"\s", e.rel):
            raise ListBuildError(f"{e.where}: video path {e.rel!r} contains whitespace, which an "
                                 "annotation list line cannot hold")
        if skip_missing and not (videos / e.rel).is_file():
            missing.append(e.rel)
            continue
        rel = e.rel if lead == "." else f"{lead}/{e.rel}"
        lines.append(f"{rel} {e.label}\n")
    if not entries:
        raise ListBuildError(f"the {split} split has no videos in the official annotations")
    if not lines:
        raise ListBuildError(f"none of the {len(entries)} {split} videos exist under {videos}")
    if missing:
        warnings.warn(f"{path.name}: {len(missing)} of {len(entries)} {split} videos are missing "
                      f"under {videos} and were left out (first: {missing[0]})", stacklevel=4)
    path.write_text("".join(lines), encoding="utf-8")
