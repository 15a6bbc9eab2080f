"""The synthetic static-bias splits: test_scuba on held-out scene types, test_scufo one
still frame of each SCUBA clip; lists, checksums, pairing, and same seed = same bytes."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from dear_ray.data.decode import read_frames
from dear_ray.data.synth import SynthParams, generate_dataset, plan_videos, verify_checksums
from dear_ray.data.synth.files import DETERMINISTIC_FILES
from dear_ray.data.synth.generate import GENERATOR_VERSION
from dear_ray.data.synth.scenes import HELD_OUT_PATTERNS, PATTERNS, scene_palette

SMALL = dict(seed=3, known_classes=3, unknown_classes=1, videos_per_class=6, frames=8, size=32,
             split_sizes={"test_scuba": 4}, progress=False)


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth_static_bias")
    generate_dataset(root, workers=1, **SMALL)
    return root


def _rows(root):
    with open(root / "videos.csv", newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def _lines(path):
    return [line.split() for line in path.read_text().splitlines()]


def test_lists_pair_line_by_line_and_are_checksummed(synth):
    scuba, scufo = _lines(synth / "test_scuba.txt"), _lines(synth / "test_scufo.txt")
    assert len(scuba) == len(scufo) == 3 * 4
    for (a, la), (b, lb) in zip(scuba, scufo, strict=True):
        assert a.startswith("videos/") and b.startswith("videos_scufo/") and la == lb
        assert a.split("/")[1:] == b.split("/")[1:]  # same class folder and file stem = video id
    manifest = json.loads((synth / "manifest.json").read_text())
    assert manifest["version"] == GENERATOR_VERSION and manifest["counts"]["test_scufo"] == 12
    assert {"test_scuba.txt", "test_scufo.txt"} <= set(manifest["checksums"]["files"])
    assert all(b in manifest["checksums"]["videos"] for b, _ in scufo)
    assert verify_checksums(synth) == []
    # the side inputs cover neither split (a SCUFO clip shares its SCUBA clip's id)
    scene_ids = set(np.load(synth / "scene_labels.npy", allow_pickle=True).item()["move_left"])
    assert not scene_ids & {a.split("/")[-1][:-4] for a, _ in scuba}


def test_a_scufo_clip_is_one_decoded_frame_of_its_scuba_clip_repeated(synth):
    rows = [r for r in _rows(synth) if r["split"] == "test_scufo"]
    assert len(rows) == 12 and len({r["still_frame"] for r in rows}) > 1  # drawn per clip
    for row in rows:
        still = read_frames(synth / row["path"], np.arange(8))
        scuba = read_frames(synth / "videos" / row["class_name"] / f"{row['video_id']}.mp4", np.arange(8))
        assert still.shape == scuba.shape == (8, 32, 32, 3)
        assert (still == still[:1]).all(), row["video_id"]  # every frame identical
        assert np.array_equal(still[0], scuba[int(row["still_frame"])]), row["video_id"]
        assert not (scuba == scuba[:1]).all()  # the SCUBA clip itself moves


def test_scuba_scene_types_appear_in_no_other_split(synth):
    rows = _rows(synth)
    scuba = {int(r["scene"]) for r in rows if r["split"] == "test_scuba"}
    others = {int(r["scene"]) for r in rows if r["split"] not in ("test_scuba", "test_scufo")}
    assert scuba == set(range(3, 3 + len(HELD_OUT_PATTERNS)))  # 4 clips a class over the 4 types
    assert not scuba & others and others <= set(range(3))
    # and neither their texture nor their tint is a training scene type's
    assert not set(HELD_OUT_PATTERNS) & set(PATTERNS)
    train_tints = {tuple(scene_palette(s, 3, known=3).ravel()) for s in range(3)}
    assert not {tuple(scene_palette(s, 3, known=3).ravel()) for s in scuba} & train_tints
    # at the demo's size too (K = 10 over 3 shared palettes): no split but test_scuba draws >= K
    tasks = plan_videos(SynthParams())
    assert {t.scene >= 10 for t in tasks if t.split not in ("test_scuba", "test_scufo")} == {False}
    assert {t.scene >= 10 for t in tasks if t.split == "test_scuba"} == {True}


def test_same_seed_same_bytes_whatever_the_worker_count(synth, tmp_path):
    again = tmp_path / "again"
    generate_dataset(again, workers=2, **SMALL)
    first, second = (json.loads((r / "manifest.json").read_text())["checksums"] for r in (synth, again))
    assert first["files"] == second["files"] and set(first["files"]) == set(DETERMINISTIC_FILES)
    assert first["videos"] == second["videos"]


def test_split_sizes_of_the_static_bias_splits():
    counts = SynthParams().counts()
    assert counts["test_scuba"] == counts["test_scufo"] == counts["val"] == 10
    assert SynthParams(split_sizes={"test_scuba": 3}).counts()["test_scufo"] == 3
    assert SynthParams(split_sizes={"test_scufo": 0}).counts()["test_scufo"] == 0
    with pytest.raises(ValueError, match=r"split_sizes\['test_scufo'\]=5 .* test_scuba size 10"):
        SynthParams(split_sizes={"test_scufo": 5})
    # 1.2 appended the splits: the plan of every earlier split is unchanged by their size
    plain = [t for t in plan_videos(SynthParams(split_sizes={"test_scuba": 0})) if t.split != "test_scufo"]
    assert plain == [t for t in plan_videos(SynthParams()) if t.split not in ("test_scuba", "test_scufo")]


def test_the_demo_regenerates_a_data_set_of_an_older_generator(tmp_path):
    """`dear-ray demo` keeps a data set only when its manifest has this generator's version."""
    from dear_ray.demo import ensure_dataset

    small = dict(known_classes=2, unknown_classes=1, videos_per_class=2, frames=4, size=32)
    root = tmp_path / "synth"
    assert ensure_dataset(root, workers=1, **small) == "absent"
    manifest = json.loads((root / "manifest.json").read_text())
    (root / "manifest.json").write_text(json.dumps({**manifest, "version": "1.1"}))
    (root / "test_scuba.txt").unlink()
    reason = ensure_dataset(root, workers=1, **small)
    assert reason is not None and "v1.1" in reason
    assert (root / "test_scuba.txt").is_file() and json.loads((root / "manifest.json").read_text())["version"] == GENERATOR_VERSION
