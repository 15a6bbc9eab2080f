"""The validation unknowns of the synthetic data (split `val_unknown`, generator 1.4): held-out
unknown motions on which detector settings are chosen, never test unknowns, known or pretraining
classes, added without changing a byte of the other splits."""

from __future__ import annotations

import dataclasses
import hashlib

import pytest

from dear_ray.data.synth import SynthParams, generate_dataset, plan_videos
from dear_ray.data.synth.motions import VAL_UNKNOWN_MOTIONS
from dear_ray.demo import DEMO_DATA, PRETRAIN_MOTIONS

# generator 1.3 wrote these bytes for this configuration (no val_unknown split then)
TINY = dict(videos_per_class=6, frames=8, size=32, bias=0.95, split_sizes={"test": 4, "unknown": 4},
            progress=False)
SHA_1_3 = {"test.txt": "d0bb935abb1fc414", "unknown.txt": "fb1153598ee3e934", "val.txt": "6a0f04a13b65ba42"}


def _sha(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def test_the_validation_unknowns_are_no_other_class_of_the_demo():
    for suffix in ("", "_unbiased"):
        params = SynthParams(**DEMO_DATA[suffix])
        val = set(params.val_unknown_motions)
        assert params.val_unknown_motions == VAL_UNKNOWN_MOTIONS and len(val) == 3
        assert not val & set(params.classes) and not val & set(params.unknown_motions)
        assert not val & set(PRETRAIN_MOTIONS)
    assert SynthParams(**DEMO_DATA["_pretrain"]).val_unknown_motions == ()


def test_adding_them_leaves_every_other_video_of_the_plan_alone():
    with_val = plan_videos(SynthParams(split_sizes={"test": 48, "unknown": 80}))
    without = plan_videos(SynthParams(split_sizes={"test": 48, "unknown": 80}, val_unknown_motions=()))
    assert [t for t in with_val if t.split != "val_unknown"] == without
    val = [t for t in with_val if t.split == "val_unknown"]
    assert len(val) == 3 * 20 and {t.class_name for t in val} == set(VAL_UNKNOWN_MOTIONS)
    assert {t.label for t in val} == {0, 1, 2}
    # like the test unknowns, each borrows one known class's scene (round(0.9 * 20) videos)
    for name in VAL_UNKNOWN_MOTIONS:
        scenes = [t.scene for t in val if t.class_name == name]
        assert max(scenes.count(s) for s in set(scenes)) == 18


@pytest.mark.parametrize("bad, match", [
    ({"val_unknown_motions": ("bounce",)}, r"val_unknown_motions=\['bounce'\].*no motion of `classes` "
                                           r"or `unknown_motions`"),
    ({"val_unknown_motions": ("move_left",)}, "no motion of `classes`"),
    ({"val_unknown_motions": ("fly",)}, "distinct motion names"),
])
def test_they_are_validated(bad, match):
    with pytest.raises(ValueError, match=match):
        SynthParams(**bad)


def test_generated_bytes_of_the_other_splits_are_those_of_generator_1_3(tmp_path):
    manifest = generate_dataset(tmp_path / "a", workers=1, **TINY)
    root = tmp_path / "a"
    assert {name: _sha(root / name) for name in SHA_1_3} == SHA_1_3
    lines = (root / "val_unknown.txt").read_text().splitlines()
    assert len(lines) == 3 * 2 and all(line.split()[0].split("/")[1] in VAL_UNKNOWN_MOTIONS for line in lines)
    assert (root / "val_unknown_classes.txt").read_text().split() == list(VAL_UNKNOWN_MOTIONS)
    assert manifest["counts"]["val_unknown"] == 6 and manifest["version"] == "1.4"
    # the same set without validation unknowns: every shared file and video is the same
    bare = generate_dataset(tmp_path / "b", workers=2, val_unknown_motions=(), **TINY)
    videos = manifest["checksums"]["videos"]
    assert {k: v for k, v in videos.items() if "/square_ccw/" not in k and "/hop/" not in k
            and "/nod/" not in k} == bare["checksums"]["videos"]
    files = {k: v for k, v in manifest["checksums"]["files"].items() if not k.startswith("val_unknown")
             and k != "videos.csv"}
    assert files == {k: v for k, v in bare["checksums"]["files"].items() if k in files}
    again = generate_dataset(tmp_path / "c", workers=2, **TINY)
    assert again["checksums"] == manifest["checksums"]


def test_params_round_trip():
    params = SynthParams(val_unknown_motions=("hop",))
    assert SynthParams(**{k: v for k, v in params.to_dict().items()
                          if k != "split_sizes"}).val_unknown_motions == ("hop",)
    assert dataclasses.replace(params).val_unknown_motions == ("hop",)
