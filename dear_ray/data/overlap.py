"""The pretraining-overlap check: which classes of an unknown set a backbone has seen as classes of
its pretraining set (`dear-ray data overlap`, docs/overlap.md).

A backbone fine-tuned from Kinetics-400 has learned every Kinetics class; an "unknown" class that
is also a Kinetics class is not unknown to its features. The check pairs an unknown set's class
names with the pretraining set's:

1. normalised names: lower case, words split on anything but letters and digits, the words a,
   an, the, of, or, and, on, in, with, to dropped, each word crudely stemmed (-ing, plural -s,
   final -e, the doubled consonant before -ing: `riding a bike` and `ride_bike` both become
   `ridbik`),
   then joined without spaces (`pull ups` and `pullup` meet);
2. a mapping file a person edits: `unknown name | pretraining name` adds a pair the names do not
   show (`shoot_bow | archery`), `unknown name | -` removes a normalised match that is wrong.

Every pair is printed with how it matched, so a person can check it. The Kinetics-400 class list
is torchvision's (`meta["categories"]` of its Kinetics-400 weights).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

PROTOCOLS = Path(__file__).parent / "protocols"
SHIPPED_UNKNOWN = {"hmdb51": PROTOCOLS / "hmdb51_classes.txt"}  # --unknown NAME
DEFAULT_MAPPINGS = {"kinetics400": PROTOCOLS / "kinetics400_overlap_map.txt"}
STOPWORDS = {"a", "an", "the", "of", "or", "and", "on", "in", "with", "to"}
NO_MATCH = "-"


class OverlapError(ValueError):
    """A bad class list or mapping file; the message names the file and line."""


@dataclass(frozen=True)
class OverlapPair:
    """An unknown class the pretraining set has: `how` is `name` (normalised names) or
    `mapping` (the mapping file, `line`)."""

    unknown: str
    pretrain: str
    how: str
    line: int | None = None


def pretrain_classes(name: str) -> list[str]:
    """The class names of pretraining set `name` (`kinetics400`: torchvision's list)."""
    if name != "kinetics400":
        raise OverlapError(f"unknown pretraining set {name!r}; known: kinetics400")
    from torchvision.models import get_model_weights

    return list(get_model_weights("r3d_18").DEFAULT.meta["categories"])


def _stem(word: str) -> str:
    if word.endswith("ing") and len(word) > 5:
        word = word[:-3]
        if word[-1] == word[-2] and word[-1] not in "aeiouslfz":  # running -> run; kissing -> kiss
            word = word[:-1]
    elif word.endswith("s") and not word.endswith("ss") and len(word) > 2:
        word = word[:-1]
    if word.endswith("e") and len(word) > 3:
        word = word[:-1]
    return word


def normalise(name: str) -> str:
    """The key two class names share when they name the same action (see the module docstring)."""
    words = [w for w in re.split(r"[^a-z0-9]+", name.lower()) if w and w not in STOPWORDS]
    return "".join(_stem(w) for w in words)


def read_names(path: str | Path) -> list[str]:
    """Class names, one a line (`#` comments and blank lines skipped); a MiT-style `name,index`
    line gives `name`.

    Raises:
        OverlapError: no names, or a name given twice (file and line named).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"class list {path} does not exist")
    names: dict[str, int] = {}
    for lineno, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        name = re.sub(r",\s*\d+$", "", line)
        if name in names:
            raise OverlapError(f"{path}:{lineno}: class {name!r} already on line {names[name]}")
        names[name] = lineno
    if not names:
        raise OverlapError(f"{path}: no class names")
    return list(names)


def read_mapping(path: str | Path, unknown: list[str], pretrain: list[str]
                 ) -> dict[str, list[tuple[str, int]]]:
    """`unknown name | pretraining name` lines -> unknown name -> [(pretraining name or "-",
    line)]. A pretraining name that is not in `pretrain` is an error (a typo would silently match
    nothing); lines of unknown names not in `unknown` are skipped, so one file holds the pairs of
    several unknown sets."""
    path = Path(path)
    known_pretrain = set(pretrain)
    out: dict[str, list[tuple[str, int]]] = {}
    for lineno, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        parts = [p.strip() for p in line.split("|")]
        if len(parts) != 2 or not all(parts):
            raise OverlapError(f"{path}:{lineno}: expected 'unknown class | {pretrain[0]}' (or "
                               f"'| -' for no match), got {raw.strip()!r}")
        left, right = parts
        if right != NO_MATCH and right not in known_pretrain:
            raise OverlapError(f"{path}:{lineno}: {right!r} is not a class of the pretraining set")
        if left in unknown:
            out.setdefault(left, []).append((right, lineno))
    return out


def find_overlap(unknown: list[str], pretrain: list[str],
                 mapping: dict[str, list[tuple[str, int]]] | None = None) -> list[OverlapPair]:
    """Every (unknown class, pretraining class) pair, in the unknown list's order: normalised-name
    matches, then the mapping's pairs; an unknown class mapped to `-` keeps none."""
    by_key: dict[str, list[str]] = {}
    for name in pretrain:
        by_key.setdefault(normalise(name), []).append(name)
    mapping = mapping or {}
    pairs: list[OverlapPair] = []
    for name in unknown:
        entries = mapping.get(name, [])
        if any(right == NO_MATCH for right, _ in entries):
            continue
        found = {p: OverlapPair(name, p, "name") for p in by_key.get(normalise(name), [])}
        for right, lineno in entries:
            found.setdefault(right, OverlapPair(name, right, "mapping", lineno))
        pairs.extend(found.values())
    return pairs


def format_overlap(pairs: list[OverlapPair], unknown: list[str], *, unknown_name: str,
                   pretrain_name: str, mapping: Path | None) -> str:
    """The printed report: one line a pair, then the count of unknown classes with a pair."""
    width = max((len(p.unknown) for p in pairs), default=7)
    lines = [f"mapping file: {mapping or '(none)'}",
             f"{'unknown':<{width}}  {'pretraining class':<34}  matched by"]
    for p in pairs:
        how = "name" if p.how == "name" else f"mapping line {p.line}"
        lines.append(f"{p.unknown:<{width}}  {p.pretrain:<34}  {how}")
    hit = len({p.unknown for p in pairs})
    lines.append(f"{hit} of {len(unknown)} {unknown_name} classes are {pretrain_name} classes "
                 f"({len(pairs)} pair(s))")
    return "\n".join(lines)


def resolve_unknown(value: str) -> tuple[str, Path]:
    """`--unknown`: a shipped set's name (hmdb51) or a class-list file -> (name, path)."""
    if value in SHIPPED_UNKNOWN:
        return value, SHIPPED_UNKNOWN[value]
    path = Path(value).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"--unknown {value}: neither a shipped class list "
                                f"({', '.join(SHIPPED_UNKNOWN)}) nor a file")
    return path.stem, path


__all__ = ["DEFAULT_MAPPINGS", "OverlapError", "OverlapPair", "find_overlap", "format_overlap",
           "normalise", "pretrain_classes", "read_mapping", "read_names", "resolve_unknown"]
