"""The demo's pretraining set (Kinetics-400's role) and what the generator needed for it: classes
by name, more scene types than classes, the motion families appended in generator 1.3."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

from dear_ray.data.synth import (
    MOTIONS,
    SynthParams,
    check_bias,
    generate_dataset,
    plan_videos,
    summarize_dataset,
)
from dear_ray.data.synth.files import DETERMINISTIC_FILES
from dear_ray.data.synth.motions import sample_actor, trajectory
from dear_ray.demo import DEMO_DATA, PRETRAIN_MOTIONS

PRETRAIN = DEMO_DATA["_pretrain"]
# a small set shaped like the pretraining set: named classes, more scene types than classes
SMALL = dict(seed=4, classes=("spiral_in", "wobble", "teleport", "move_up_right"), scene_types=7,
             bias=0.5, videos_per_class=4, frames=6, size=32,
             split_sizes={"val": 0, "test": 2, "test_shifted": 7, "test_scuba": 0}, progress=False)


def _demo_params(suffix: str) -> SynthParams:
    return SynthParams(**DEMO_DATA[suffix])


def test_the_pretraining_set_holds_no_motion_of_the_demo():
    """No unknown motion of the demo among its classes (an unknown seen in pretraining is no
    longer unknown), nor a known one (sharing them left no static bias: docs/synthetic_data.md)."""
    pretrain = _demo_params("_pretrain")
    assert pretrain.classes == PRETRAIN_MOTIONS and pretrain.unknown_motions == ()
    for suffix in ("", "_unbiased"):
        known, unknown = _demo_params(suffix).class_names()
        assert len(known) == 10 and len(unknown) == 6
        assert not set(pretrain.classes) & set(unknown)
        assert not set(pretrain.classes) & set(known)
    assert len(pretrain.classes) > 10 and pretrain.scene_types == 30 > pretrain.known_classes
    # its own seed: none of its videos shares an actor stream with the demo's sets
    assert pretrain.seed != _demo_params("").seed == _demo_params("_unbiased").seed


def test_demo_test_splits_are_sized_for_narrow_intervals():
    counts = _demo_params("").counts()
    assert counts["test"] * 10 == counts["test_shifted"] * 10 == 480
    assert counts["unknown"] * 6 == 480 and counts["test_scuba"] == counts["test_scufo"] == 30
    assert _demo_params("_unbiased").counts() == counts


def test_more_scene_types_than_classes(tmp_path):
    """Class i owns scene type i of P; the other draws and test_shifted cover all P types; the
    held-out SCUBA types start at P; the pseudo-labels have P entries."""
    params = SynthParams(**{k: v for k, v in SMALL.items() if k != "progress"})
    assert params.known_classes == 4 and params.scene_types == 7
    tasks = plan_videos(params)
    train = [t for t in tasks if t.split == "train"]
    assert sum(t.scene == t.label for t in train) == 4 * 2  # round(0.5 * 4) a class
    assert max(t.scene for t in tasks) < 7  # no held-out type without test_scuba
    many = plan_videos(SynthParams(classes=SMALL["classes"], scene_types=7, videos_per_class=60))
    off_scene = {t.scene for t in many if t.split == "train" and t.scene != t.label}
    assert off_scene == set(range(7))  # the 3 types no class owns are drawn too
    shifted = [t for t in tasks if t.split == "test_shifted"]
    for label in range(4):  # 7 videos a class over the 7 types: each once
        assert sorted(t.scene for t in shifted if t.label == label) == list(range(7))
    scuba = plan_videos(SynthParams(classes=SMALL["classes"], scene_types=7,
                                    split_sizes={"test_scuba": 4}))
    assert {t.scene for t in scuba if t.split == "test_scuba"} == {7, 8, 9, 10}

    root = tmp_path / "pre"
    manifest = generate_dataset(root, workers=1, **SMALL)
    assert manifest["classes"] == list(SMALL["classes"]) and manifest["unknown_classes"] == []
    assert len(manifest["scenes"]) == 7 and (root / "unknown.txt").read_text() == ""
    assert check_bias(root)["chance"] == pytest.approx(1 / 7)
    summary = summarize_dataset(root)
    assert "scene types: 7" in summary and "nan" not in summary
    assert "no videos in val, unknown, test_scuba, test_scufo" in summary
    labels = np.load(root / "scene_labels.npy", allow_pickle=True).item()
    assert {v["probs"].shape for c in labels.values() for v in c.values()} == {(7,)}


def test_same_seed_same_bytes_of_a_named_class_set(tmp_path):
    first = generate_dataset(tmp_path / "a", workers=1, **SMALL)["checksums"]
    second = generate_dataset(tmp_path / "b", workers=2, **SMALL)["checksums"]
    assert set(first["files"]) == set(DETERMINISTIC_FILES)
    assert first == second
    other = generate_dataset(tmp_path / "c", workers=1, **{**SMALL, "seed": 5})["checksums"]
    assert other["videos"].keys() == first["videos"].keys()
    assert not set(other["videos"].values()) & set(first["videos"].values())


def _plan_digest(params: SynthParams) -> str:
    rows = [(t.split, t.class_name, t.label, t.index, t.video_id, t.scene, t.still_frame)
            for t in plan_videos(params) if t.split != "val_unknown"]  # appended in generator 1.4
    return hashlib.sha256(repr(rows).encode()).hexdigest()[:16]


def test_the_defaults_keep_the_plan_of_generator_1_2():
    """Digests of generator 1.2's plans (computed with its code): naming classes and scene types
    changed nothing for a data set that does not use them."""
    assert _plan_digest(SynthParams()) == "7a973e26539f6465"
    assert _plan_digest(SynthParams(bias=0.1)) == "14288f48aeef4ed4"
    assert _plan_digest(SynthParams(seed=5, split_sizes={"test": 48, "unknown": 80})) == "3709b485457c8292"
    default = SynthParams()
    assert default.classes == MOTIONS[:10] and default.unknown_motions == MOTIONS[10:16]
    assert default.scene_types == 10
    assert SynthParams(known_classes=10, unknown_classes=6).to_dict() == default.to_dict()


@pytest.mark.parametrize("bad, match", [
    ({"classes": ("move_left", "fly")}, r"classes=\['move_left', 'fly'\].*distinct motion names"),
    ({"classes": ("grow", "grow")}, "distinct motion names"),
    ({"classes": "grow"}, "a list of motion names"),
    ({"classes": ("grow", "shrink"), "known_classes": 3}, "known_classes=3 .* 2, the number of `classes`"),
    ({"classes": ("grow", "shrink"), "unknown_classes": 1}, "name the unknown ones in `unknown_motions`"),
    ({"classes": ("grow", "shrink"), "unknown_motions": ("shrink",)},
     r"no motion of `classes` \(\['shrink'\]\)"),
    ({"classes": ("grow", "shrink"), "scene_types": 1}, "scene_types=1 .* at least known_classes"),
    ({"known_classes": 1}, "known_classes=1 .* at least 2"),
])
def test_class_and_scene_parameters_are_validated(bad, match):
    with pytest.raises(ValueError, match=match):
        SynthParams(**bad)


def test_named_unknown_motions():
    params = SynthParams(classes=("grow", "shrink"), unknown_motions=("pulse",), videos_per_class=6)
    assert params.class_names() == (["grow", "shrink"], ["pulse"]) and params.unknown_classes == 1
    unknown = [t for t in plan_videos(params) if t.split == "unknown"]
    assert {t.class_name for t in unknown} == {"pulse"} and {t.scene for t in unknown} <= {0, 1}


def _pose(motion: str, seed: int = 0, frames: int = 16, size: int = 40):
    rng = np.random.default_rng(seed)
    actor = sample_actor(rng, size, radius=10.0, speed=2.5, rim=2.0)
    return actor, trajectory(motion, actor, rng, frames=frames, size=size)


@pytest.mark.parametrize("motion", MOTIONS[19:])
def test_every_new_family_moves_and_is_reproducible(motion):
    _, a = _pose(motion)
    _, b = _pose(motion)
    for x, y in zip((a.cx, a.cy, a.scale, a.angle), (b.cx, b.cy, b.scale, b.angle), strict=True):
        assert np.array_equal(x, y)
    still = all(np.ptp(v) < 1e-9 for v in (a.cx, a.cy, a.scale, a.angle))
    assert not still, motion


def test_new_families_by_hand():
    actor, wobble = _pose("wobble")
    assert np.ptp(wobble.cx) == np.ptp(wobble.cy) == np.ptp(wobble.scale) == 0  # rotates in place
    turn = np.diff(wobble.angle)
    assert (turn > 0).any() and (turn < 0).any()  # back and forth
    # its fastest turn is rotate_cw's constant rate (ROTATION_RIM_SPEED x speed / radius) at most
    _, rotate = _pose("rotate_cw")
    assert np.abs(turn).max() <= abs(rotate.angle[1] - rotate.angle[0]) + 1e-9

    _, teleport = _pose("teleport")
    jumps = np.hypot(np.diff(teleport.cx), np.diff(teleport.cy)) > 0
    assert 2 <= jumps.sum() <= 4  # a new spot every 4-6 frames over 16 frames

    _, square = _pose("square_cw", frames=40)
    step = np.stack([np.diff(square.cx), np.diff(square.cy)], axis=1)
    cross = step[:-1, 0] * step[1:, 1] - step[:-1, 1] * step[1:, 0]
    assert (cross >= -1e-9).all() and (cross > 1e-9).any()  # turns one way: y down, clockwise
    _, orbit = _pose("orbit_cw")  # the same sign as orbit_cw, clockwise on screen
    ostep = np.stack([np.diff(orbit.cx), np.diff(orbit.cy)], axis=1)
    assert (ostep[:-1, 0] * ostep[1:, 1] - ostep[:-1, 1] * ostep[1:, 0] > 0).all()

    _, acc = _pose("accelerate")
    _, dec = _pose("decelerate")
    speed_a = np.hypot(np.diff(acc.cx), np.diff(acc.cy))
    speed_d = np.hypot(np.diff(dec.cx), np.diff(dec.cy))
    assert (np.diff(speed_a) > 0).all() and (np.diff(speed_d) < 0).all()
    _, back = _pose("out_and_back")
    assert back.cx[0] == pytest.approx(back.cx[-1]) and back.cy[0] == pytest.approx(back.cy[-1])
    _, stop_go = _pose("stop_go")
    moving = np.hypot(np.diff(stop_go.cx), np.diff(stop_go.cy)) > 1e-9
    assert moving.any() and (~moving).any()


def test_the_demo_keeps_a_pretraining_set_of_the_same_parameters(tmp_path):
    """`ensure_dataset` compares the manifest's parameters, class lists included."""
    from dear_ray.demo import ensure_dataset

    small = {k: v for k, v in SMALL.items() if k != "progress"}
    root = tmp_path / "pre"
    assert ensure_dataset(root, workers=1, **small) == "absent"
    assert ensure_dataset(root, workers=1, **small) is None
    manifest = json.loads((root / "manifest.json").read_text())
    assert manifest["version"] == "1.4" and manifest["params"]["classes"] == list(SMALL["classes"])
    reordered = {**small, "classes": SMALL["classes"][::-1]}
    assert "other parameters" in ensure_dataset(root, workers=1, **reordered)
