"""Diving48 lists (v1 as used by SDN, and v2)."""

from __future__ import annotations

from pathlib import Path

from dear_ray.data.lists._common import (
    DATASETS,
    ListBuildError,
    PathLike,
    _check_split,
    _Entry,
    _folder,
    _load_json,
    _mapping,
    _require,
    _videos,
    _write_all,
)


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
