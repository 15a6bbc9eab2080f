"""MMAction2-format annotation lists for the real data sets, built from their official files.

    build_lists("ucf101", root="/data/ucf101", out_dir="/data/lists", split=1,
                relative_to="/data")
    # {'train': .../ucf101_train_split_1_videos.txt, 'test': .../ucf101_val_split_1_videos.txt,
    #  'classes': .../ucf101_classes.txt}

Every builder writes a train list, a test list (named `val` as in MMAction2 and DEAR, which evaluate
on the official test split) and a class-name file (line i = label i), and returns their paths under
the keys `train`, `test` and `classes`. A list line is `relative/path.ext label` (0-based label);
the path is relative to `relative_to` (default: the data set's video folder), so several data sets
under one folder can share one `data.data_root`. Videos need not exist when the lists are built;
`skip_missing=True` leaves out the ones that do not (a warning counts them).

Official files read (the first existing candidate under `root` is used; the error lists them all):
- UCF-101: `ucfTrainTestlist/classInd.txt` (`1 ApplyEyeMakeup`), `trainlist0{1,2,3}.txt`
  (`Class/v_x.avi 1`, 1-based label), `testlist0{1,2,3}.txt` (`Class/v_x.avi`); videos `UCF-101/`.
  The label comes from the class folder and is checked against the train list's label.
- HMDB-51: `testTrainMulti_7030_splits/<class>_test_split{1,2,3}.txt` (`name.avi 1`: 1 = train,
  2 = test, 0 = unused); classes sorted by name; videos `videos/<class>/<name>.avi`.
- MiT-v2: `moments_categories.txt` (`name,index`), `trainingSet.csv` / `validationSet.csv`
  (`category/file.mp4,category,...`); videos `training/` and `validation/`.
- Kinetics-400: `annotations/kinetics_{train,val}.csv` (header `label,youtube_id,time_start,
  time_end,split[,is_cc]`) or the official JSON (`{youtube_id: {"annotations": {"label", "segment"},
  ...}}`); videos `videos_{train,val}/<label with '_' for ' '>/<id>_<start:06d>_<end:06d>.mp4`;
  classes sorted by name (MMAction2).
- Mini-Kinetics-200 (Xie et al. 2018): the Kinetics-400 files plus `train_ytid_list.txt` /
  `val_ytid_list.txt` (one YouTube id a line); classes: the sorted labels of the listed videos.
- Diving48: `Diving48_V2_{train,test}.json` (v2) or `Diving48_{train,test}.json` (v1, used by SDN):
  `[{"vid_name", "label", "start_frame", "end_frame"}, ...]`; `Diving48_vocab.json` (48 lists of
  4 sub-action words, class name = the words joined by `_`); videos `rgb/<vid_name>.mp4`.
"""

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


def build_lists(dataset: str, *, root: PathLike, out_dir: PathLike, split: int = 1,
                **options) -> dict[str, Path]:
    """Build the annotation lists of one data set from its official files.

    Args:
        dataset: `ucf101`, `hmdb51`, `mit_v2`, `kinetics400`, `minikinetics200` or `diving48`.
        root: the data set's folder (official annotation files and videos).
        out_dir: where the lists and the class-name file are written (created if needed).
        split: official split 1, 2 or 3 (UCF-101, HMDB-51); the others have only split 1.
        **options: the builder's keyword options (`videos_dir`, `relative_to`, `skip_missing`, ...).

    Returns:
        `{"train": Path, "test": Path, "classes": Path}`.

    Raises:
        UnknownNameError: unknown data set (the message lists the known ones).
        FileNotFoundError: an official file is missing (the message lists where it was looked for).
        ListBuildError: a malformed file, naming the file and the line.
    """
    builder = DATASETS.get(dataset)
    return builder(root, out_dir, split=split, **options)


def list_datasets() -> list[str]:
    """The data set names `build_lists` accepts."""
    return DATASETS.names()


# --------------------------------------------------------------------------------------------
# Builders


@DATASETS.register("ucf101")
def build_ucf101_lists(root: PathLike, out_dir: PathLike, *, split: int = 1,
                       annotations_dir: PathLike | None = None, videos_dir: PathLike | None = None,
                       relative_to: PathLike | None = None,
                       skip_missing: bool = False) -> dict[str, Path]:
    """UCF-101 from `classInd.txt`, `trainlist0{split}.txt` and `testlist0{split}.txt` (101 classes)."""
    root = Path(root)
    _check_split(split, (1, 2, 3), "ucf101")
    ann = _folder(root, annotations_dir, ["ucfTrainTestlist", "annotations", "."], "classInd.txt")
    class_file = _require(ann / "classInd.txt", "UCF-101 class index")
    names = []
    for lineno, fields in _lines(class_file):
        if len(fields) != 2:
            raise ListBuildError(f"{class_file}:{lineno}: expected 'index ClassName', got "
                                 f"{' '.join(fields)!r}")
        index = _int(fields[0], "class index", f"{class_file}:{lineno}")
        if index != len(names) + 1:
            raise ListBuildError(f"{class_file}:{lineno}: class index {index}, expected "
                                 f"{len(names) + 1} (indices are 1-based and consecutive)")
        names.append(fields[1])
    mapping = _mapping(names, class_file)

    def parse(path: Path, labelled: bool) -> list[_Entry]:
        entries = []
        for lineno, fields in _lines(path):
            where = f"{path}:{lineno}"
            if len(fields) not in ((2,) if labelled else (1, 2)):
                form = "'Class/v_name.avi index'" if labelled else "'Class/v_name.avi'"
                raise ListBuildError(f"{where}: expected {form}, got {' '.join(fields)!r}")
            rel = fields[0].replace("\\", "/")
            label = _label_of_folder(rel, mapping, where, class_file)
            if len(fields) == 2 and _int(fields[1], "label", where) != label + 1:
                raise ListBuildError(f"{where}: label {fields[1]} does not match class "
                                     f"{rel.split('/')[0]!r} (index {label + 1} in {class_file})")
            entries.append(_Entry(rel, label, where))
        return entries

    train = parse(_require(ann / f"trainlist{split:02d}.txt", "UCF-101 train split"), True)
    test = parse(_require(ann / f"testlist{split:02d}.txt", "UCF-101 test split"), False)
    videos = _videos(root, videos_dir, ["UCF-101", "videos"])
    return _write_all(out_dir, "ucf101", f"split_{split}", names, (train, videos), (test, videos),
                      relative_to, skip_missing)


@DATASETS.register("hmdb51")
def build_hmdb51_lists(root: PathLike, out_dir: PathLike, *, split: int = 1,
                       annotations_dir: PathLike | None = None, videos_dir: PathLike | None = None,
                       relative_to: PathLike | None = None,
                       skip_missing: bool = False) -> dict[str, Path]:
    """HMDB-51 from `<class>_test_split{split}.txt` (flag 1 = train, 2 = test, 0 = unused)."""
    root = Path(root)
    _check_split(split, (1, 2, 3), "hmdb51")
    pattern = f"*_test_split{split}.txt"
    ann = _folder(root, annotations_dir, ["testTrainMulti_7030_splits", "annotations", "."],
                  pattern)
    files = sorted(ann.glob(pattern))
    if not files:
        raise FileNotFoundError(f"no HMDB-51 split files {pattern} in {ann}")
    names = [f.name.removesuffix(pattern[1:]) for f in files]
    train, test = [], []
    for label, (name, path) in enumerate(zip(names, files, strict=True)):
        for lineno, fields in _lines(path):
            where = f"{path}:{lineno}"
            if len(fields) != 2 or fields[1] not in ("0", "1", "2"):
                raise ListBuildError(f"{where}: expected 'video_name.avi flag' with flag 0 "
                                     f"(unused), 1 (train) or 2 (test), got {' '.join(fields)!r}")
            if fields[1] != "0":
                (train if fields[1] == "1" else test).append(_Entry(f"{name}/{fields[0]}", label,
                                                                    where))
    videos = _videos(root, videos_dir, ["videos", "hmdb51_org"])
    return _write_all(out_dir, "hmdb51", f"split_{split}", names, (train, videos), (test, videos),
                      relative_to, skip_missing)


@DATASETS.register("mit_v2")
def build_mit_lists(root: PathLike, out_dir: PathLike, *, split: int = 1,
                    annotations_dir: PathLike | None = None, videos_dir: PathLike | None = None,
                    relative_to: PathLike | None = None,
                    skip_missing: bool = False) -> dict[str, Path]:
    """Moments in Time v2 from `moments_categories.txt` and the training/validation CSVs (305 classes).

    `videos_dir` holds `training/` and `validation/`; the test list is the validation set.
    """
    root = Path(root)
    _check_split(split, (1,), "mit_v2")
    ann = _folder(root, annotations_dir, [".", "annotations"], "moments_categories.txt")
    cat_file = _require(ann / "moments_categories.txt", "MiT category file")
    indexed = {}
    for lineno, row in _csv_rows(cat_file):
        where = f"{cat_file}:{lineno}"
        if len(row) != 2:
            raise ListBuildError(f"{where}: expected 'category,index', got {','.join(row)!r}")
        index = _int(row[1], "category index", where)
        if index in indexed:
            raise ListBuildError(f"{where}: category index {index} is used twice")
        indexed[index] = row[0]
    if sorted(indexed) != list(range(len(indexed))):
        raise ListBuildError(f"{cat_file}: category indices must be 0..{len(indexed) - 1}")
    names = [indexed[i] for i in range(len(indexed))]
    mapping = _mapping(names, cat_file)

    def parse(path: Path, folder: str) -> list[_Entry]:
        entries = []
        for lineno, row in _csv_rows(path):
            where = f"{path}:{lineno}"
            rel = row[0].replace("\\", "/")
            label = _label_of_folder(rel, mapping, where, cat_file)
            if len(row) > 1 and row[1].strip() and row[1].strip() != rel.split("/")[0]:
                raise ListBuildError(f"{where}: category {row[1]!r} differs from the video's "
                                     f"folder {rel.split('/')[0]!r}")
            entries.append(_Entry(f"{folder}/{rel}", label, where))
        return entries

    train = parse(_require(ann / "trainingSet.csv", "MiT training set"), "training")
    test = parse(_require(ann / "validationSet.csv", "MiT validation set"), "validation")
    videos = _videos(root, videos_dir, ["."])
    return _write_all(out_dir, "mit", "list", names, (train, videos), (test, videos),
                      relative_to, skip_missing)


@DATASETS.register("kinetics400")
def build_kinetics400_lists(root: PathLike, out_dir: PathLike, *, split: int = 1,
                            train_annotations: PathLike | None = None,
                            val_annotations: PathLike | None = None,
                            train_videos: PathLike | None = None, val_videos: PathLike | None = None,
                            class_folders: bool = True, relative_to: PathLike | None = None,
                            skip_missing: bool = False) -> dict[str, Path]:
    """Kinetics-400 from its CSV or JSON annotations (classes: sorted training labels).

    Args:
        class_folders: videos lie in `<label>/` folders (spaces as `_`, MMAction2's layout);
            False: all videos of a split in one folder.
    """
    return _build_kinetics("kinetics400", Path(root), out_dir, split, train_annotations,
                           val_annotations, train_videos, val_videos, class_folders, relative_to,
                           skip_missing, id_lists=None)


@DATASETS.register("minikinetics200")
def build_minikinetics200_lists(root: PathLike, out_dir: PathLike, *, split: int = 1,
                                train_annotations: PathLike | None = None,
                                val_annotations: PathLike | None = None,
                                train_ids: PathLike | None = None, val_ids: PathLike | None = None,
                                train_videos: PathLike | None = None,
                                val_videos: PathLike | None = None, class_folders: bool = True,
                                relative_to: PathLike | None = None,
                                skip_missing: bool = False) -> dict[str, Path]:
    """Mini-Kinetics-200: the Kinetics-400 videos whose ids are in `train/val_ytid_list.txt`."""
    root = Path(root)
    ids = []
    for given, name in ((train_ids, "train_ytid_list.txt"), (val_ids, "val_ytid_list.txt")):
        path = Path(given) if given else _find(root, [name, f"annotations/{name}"],
                                               "Mini-Kinetics-200 id list")
        ids.append(_read_ids(_require(path, "Mini-Kinetics-200 id list")))
    return _build_kinetics("minikinetics200", root, out_dir, split, train_annotations,
                           val_annotations, train_videos, val_videos, class_folders, relative_to,
                           skip_missing, id_lists=tuple(ids))


@DATASETS.register("diving48")
def build_diving48_lists(root: PathLike, out_dir: PathLike, *, split: int = 1, version: str = "v2",
                         annotations_dir: PathLike | None = None, videos_dir: PathLike | None = None,
                         relative_to: PathLike | None = None,
                         skip_missing: bool = False) -> dict[str, Path]:
    """Diving48 from `Diving48[_V2]_{train,test}.json` and `Diving48_vocab.json` (48 classes).

    Args:
        version: `v2` (cleaned labels, MMAction2's default) or `v1` (the files SDN used).
    """
    root = Path(root)
    _check_split(split, (1,), "diving48")
    if version not in ("v1", "v2"):
        raise ValueError(f"diving48 version {version!r}: expected 'v1' or 'v2'")
    stem = "Diving48_V2" if version == "v2" else "Diving48"
    ann = _folder(root, annotations_dir, [".", "annotations"], "Diving48_vocab.json")
    vocab_file = _require(ann / "Diving48_vocab.json", "Diving48 vocabulary")
    vocab = _load_json(vocab_file)
    if not isinstance(vocab, list) or not vocab:
        raise ListBuildError(f"{vocab_file}: expected a list of classes, each a list of words")
    names = []
    for i, words in enumerate(vocab):
        if not isinstance(words, list) or not words or not all(isinstance(w, str) for w in words):
            raise ListBuildError(f"{vocab_file}: entry {i}: expected a list of words, got {words!r}")
        names.append("_".join(words))
    _mapping(names, vocab_file)

    def parse(path: Path) -> list[_Entry]:
        items = _load_json(path)
        if not isinstance(items, list):
            raise ListBuildError(f"{path}: expected a list of videos, got {type(items).__name__}")
        entries = []
        for i, item in enumerate(items):
            where = f"{path}: entry {i}"
            if not isinstance(item, dict) or not isinstance(item.get("vid_name"), str) \
                    or not isinstance(item.get("label"), int):
                raise ListBuildError(f"{where}: expected {{'vid_name': str, 'label': int, ...}}, "
                                     f"got {item!r}")
            if not 0 <= item["label"] < len(names):
                raise ListBuildError(f"{where}: label {item['label']} is out of range "
                                     f"[0, {len(names)}) of {vocab_file}")
            entries.append(_Entry(f"{item['vid_name']}.mp4", item["label"], where))
        return entries

    train = parse(_require(ann / f"{stem}_train.json", "Diving48 training set"))
    test = parse(_require(ann / f"{stem}_test.json", "Diving48 test set"))
    videos = _videos(root, videos_dir, ["rgb", "videos"])
    return _write_all(out_dir, "diving48", "list", names, (train, videos), (test, videos),
                      relative_to, skip_missing)


# --------------------------------------------------------------------------------------------
# Kinetics


def _build_kinetics(prefix, root, out_dir, split, train_ann, val_ann, train_videos, val_videos,
                    class_folders, relative_to, skip_missing, id_lists):
    _check_split(split, (1,), prefix)
    candidates = {"train": ["annotations/kinetics_train.csv", "annotations/train.csv",
                            "kinetics_train.csv", "train.csv", "annotations/kinetics_train.json",
                            "kinetics_train.json"],
                  "val": ["annotations/kinetics_val.csv", "annotations/validate.csv",
                          "kinetics_val.csv", "validate.csv", "annotations/kinetics_val.json",
                          "kinetics_val.json"]}
    rows = {}
    for subset, given in (("train", train_ann), ("val", val_ann)):
        path = Path(given) if given else _find(root, candidates[subset],
                                               f"Kinetics {subset} annotations")
        rows[subset] = _read_kinetics(_require(path, f"Kinetics {subset} annotations"))
    if id_lists is not None:
        for subset, wanted in zip(("train", "val"), id_lists, strict=True):
            found = [r for r in rows[subset] if r[1] in wanted]
            missing = len(wanted) - len({r[1] for r in found})
            if missing:
                warnings.warn(f"{prefix}: {missing} of {len(wanted)} {subset} ids are not in the "
                              "Kinetics annotations; they are left out", stacklevel=3)
            rows[subset] = found
    names = sorted({r[0] for r in rows["train"]})
    if not names:
        raise ListBuildError(f"{prefix}: no labelled training videos in the annotations")
    mapping = {n: i for i, n in enumerate(names)}

    def entries(subset: str) -> list[_Entry]:
        out = []
        for label, ytid, start, end, where in rows[subset]:
            if label not in mapping:
                raise ListBuildError(f"{where}: label {label!r} does not occur in the training "
                                     "annotations")
            name = f"{ytid}_{start:06d}_{end:06d}.mp4"
            folder = label.replace(" ", "_") + "/" if class_folders else ""
            out.append(_Entry(folder + name, mapping[label], where))
        return out

    train_dir = _videos(root, train_videos, ["videos_train", "train"])
    val_dir = _videos(root, val_videos, ["videos_val", "val"])
    return _write_all(out_dir, prefix, "list", names, (entries("train"), train_dir),
                      (entries("val"), val_dir), relative_to, skip_missing)


def _read_kinetics(path: Path) -> list[tuple[str, str, int, int, str]]:
    """(label, youtube_id, start s, end s, where) of every labelled row of a CSV or JSON file."""
    out = []
    if path.suffix == ".json":
        data = _load_json(path)
        if not isinstance(data, dict):
            raise ListBuildError(f"{path}: expected {{youtube_id: {{'annotations': ...}}}}")
        for ytid, item in data.items():
            where = f"{path}: entry {ytid!r}"
            ann = item.get("annotations") if isinstance(item, dict) else None
            seg = ann.get("segment") if isinstance(ann, dict) else None
            if not isinstance(seg, list) or len(seg) != 2:
                raise ListBuildError(f"{where}: expected 'annotations': {{'label', 'segment': "
                                     f"[start, end]}}, got {item!r}")
            if ann.get("label"):
                out.append((str(ann["label"]).replace('"', ""), ytid, int(float(seg[0])),
                            int(float(seg[1])), where))
        return out
    with path.open(newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        need = {"label", "youtube_id", "time_start", "time_end"}
        if not need <= set(reader.fieldnames or ()):
            raise ListBuildError(f"{path}:1: expected a header with {sorted(need)}, got "
                                 f"{reader.fieldnames}")
        for lineno, row in enumerate(reader, start=2):
            where = f"{path}:{lineno}"
            label = (row["label"] or "").replace('"', "").strip()
            if not label:
                continue  # the test set carries no labels
            start = _int(row["time_start"], "time_start", where, as_float=True)
            end = _int(row["time_end"], "time_end", where, as_float=True)
            out.append((label, row["youtube_id"].strip(), start, end, where))
    return out


def _read_ids(path: Path) -> set[str]:
    return {fields[0] for _, fields in _lines(path)}


# --------------------------------------------------------------------------------------------
# Helpers


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
