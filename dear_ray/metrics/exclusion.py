"""Unknown classes left out of an unknown set: `eval.exclude_classes` (docs/overlap.md).

A backbone pretrained on Kinetics-400 has seen every unknown class that is also a Kinetics class
(`dear-ray data overlap`). `eval.exclude_classes` names such classes (a list, or a file: one name a
line, or the saved output of `dear-ray data overlap`), and the report gives every unknown set that
holds one of them twice: whole, and without them as `<set>-minus-<tag>` (e.g.
`hmdb51-minus-kinetics400`), with every metric and interval of the whole set.

An unknown store holds class ids, not names: the names come from the set's list file, whose
lines name a video by its class folder (`<class>/<video>` or `videos/<class>/<video>.mp4`, the
synthetic data's and MMAction2's layout), so label i is named by the folder of its videos.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dear_ray.scores import ScoreStore

DEFAULT_TAG = "excluded"
# `dear-ray data overlap`'s last line: "32 of 51 hmdb51 classes are kinetics400 classes (49 pair(s))"
_OVERLAP_SUMMARY = re.compile(r"^\d+ of \d+ .* classes are (\S+) classes \(\d+ pair\(s\)\)$")
_TAG = re.compile(r"[^A-Za-z0-9_.=]+")


@dataclass(frozen=True)
class Exclusion:
    """Unknown class ids to leave out, per unknown set (store `dataset`), and the row suffix tag."""

    tag: str
    ids: Mapping[str, frozenset[int]]

    def set_name(self, unknown_set: str) -> str:
        return f"{unknown_set}-minus-{self.tag}"


def read_exclusion_names(value: str | Path | Sequence[str]) -> tuple[list[str], str]:
    """`(class names, tag)` from a list of names or a file.

    A file is one name a line (`#` comments skipped), or the output of `dear-ray data overlap`
    saved to a file (its first column; the tag is the pretraining set's name, e.g. `kinetics400`).
    The tag of a plain file is its stem, of a list `excluded`.

    Raises:
        FileNotFoundError: a path that is no file.
        ValueError: no names.
    """
    if isinstance(value, (list, tuple)):
        names, tag = [str(v).strip() for v in value if str(v).strip()], DEFAULT_TAG
        where = "eval.exclude_classes"
    else:
        path = Path(value).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"eval.exclude_classes: {path} is no file (expected class names, one "
                                    "a line, or the saved output of `dear-ray data overlap`)")
        names, tag = _names_in_file(path)
        where = str(path)
    if not names:
        raise ValueError(f"{where}: no class names to exclude")
    return list(dict.fromkeys(names)), _TAG.sub("_", tag).strip("_") or DEFAULT_TAG


def _names_in_file(path: Path) -> tuple[list[str], str]:
    lines = [line.rstrip() for line in path.read_text(encoding="utf-8").splitlines()]
    if lines and lines[0].startswith("mapping file:"):  # `dear-ray data overlap` output
        summary = _OVERLAP_SUMMARY.match(lines[-1].strip()) if lines else None
        if len(lines) < 3 or summary is None:
            raise ValueError(f"{path}: starts like `dear-ray data overlap` output but does not end with "
                             "its summary line ('N of M ... classes are ... classes (P pair(s))')")
        return [line.split()[0] for line in lines[2:-1] if line.strip()], summary.group(1)
    names = [line.strip() for line in lines if line.strip() and not line.strip().startswith("#")]
    return names, path.stem


def class_names_of_list(list_file: str | Path) -> dict[int, str]:
    """Label -> class name of an annotation list, the class being the folder of each video.

    Raises:
        ValueError: a label whose videos lie in two folders, or a line without a label.
    """
    names: dict[int, str] = {}
    path = Path(list_file)
    for lineno, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        parts = raw.split()
        if not parts:
            continue
        if len(parts) < 2 or not parts[-1].lstrip("-").isdigit():
            raise ValueError(f"{path}:{lineno}: expected '<video path> <label>', got {raw!r}")
        label, folder = int(parts[-1]), Path(parts[0]).parent.name
        if names.setdefault(label, folder) != folder:
            raise ValueError(f"{path}:{lineno}: label {label} is class {names[label]!r} on an earlier line "
                             f"and {folder!r} here: the class names come from the videos' folders")
    return names


def resolve_exclusion(names: Sequence[str], tag: str, unknown_lists: Mapping[str, str | Path]) -> Exclusion:
    """The class ids of `names` in each unknown set (`unknown_lists`: set name -> list file).

    Raises:
        ValueError: a name that is a class of none of the sets (the message lists them).
    """
    ids: dict[str, frozenset[int]] = {}
    found: set[str] = set()
    for unknown_set, list_file in unknown_lists.items():
        by_name = {name: label for label, name in class_names_of_list(list_file).items()}
        hit = {by_name[n] for n in names if n in by_name}
        found |= {n for n in names if n in by_name}
        if hit:
            ids[unknown_set] = frozenset(hit)
    missing = [n for n in names if n not in found]
    if missing:
        raise ValueError(f"eval.exclude_classes: {', '.join(missing)} is no class of the unknown set(s) "
                         f"{', '.join(unknown_lists)} (their list files: "
                         f"{', '.join(str(p) for p in unknown_lists.values())})")
    return Exclusion(tag, ids)


def exclusion_from_config(value: str | Path | Sequence[str] | None, data_root: str | Path,
                          unknown: Mapping[str, str]) -> Exclusion | None:
    """The `Exclusion` of `eval.exclude_classes` for a config's unknown sets (`data.unknown`: set
    name -> list file, relative to `data_root` unless absolute); None without one."""
    if value is None:
        return None
    names, tag = read_exclusion_names(value)
    lists = {name: (Path(p).expanduser() if Path(p).expanduser().is_absolute() else Path(data_root) / p)
             for name, p in unknown.items()}
    return resolve_exclusion(names, tag, lists)


def without_classes(store: ScoreStore, ids: frozenset[int]) -> ScoreStore:
    """The store without the videos of class ids `ids` (every per-video array cut alike)."""
    keep = ~np.isin(store.labels, sorted(ids))
    if not keep.any():
        raise ValueError(f"{store.path}: excluding classes {sorted(ids)} leaves no unknown video")
    cut = lambda a: None if a is None else a[keep]  # noqa: E731
    return dataclasses.replace(
        store, video_ids=store.video_ids[keep], labels=store.labels[keep], preds=store.preds[keep],
        logits=cut(store.logits), features=cut(store.features),
        sample_logits=None if store.sample_logits is None else store.sample_logits[:, keep],
        scores={k: v[keep] for k, v in store.scores.items()}, decisions=cut(store.decisions))


__all__ = ["DEFAULT_TAG", "Exclusion", "class_names_of_list", "exclusion_from_config", "read_exclusion_names",
           "resolve_exclusion", "without_classes"]
