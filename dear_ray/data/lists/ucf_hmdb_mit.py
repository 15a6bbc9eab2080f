"""UCF-101, HMDB-51 and Moments in Time v2 lists."""

from __future__ import annotations

from pathlib import Path

from dear_ray.data.lists._common import (
    DATASETS,
    ListBuildError,
    PathLike,
    _check_split,
    _csv_rows,
    _Entry,
    _folder,
    _int,
    _label_of_folder,
    _lines,
    _mapping,
    _require,
    _videos,
    _write_all,
)


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
