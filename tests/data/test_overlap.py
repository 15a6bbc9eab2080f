"""The pretraining-overlap check: normalised names, the mapping file, the CLI report."""

import pytest

from dear_ray.cli import main
from dear_ray.data.overlap import (
    OverlapError,
    find_overlap,
    normalise,
    pretrain_classes,
    read_mapping,
    read_names,
)


def test_normalised_names_meet_across_spellings():
    assert normalise("ride_bike") == normalise("riding a bike") == "ridbik"
    assert normalise("pullup") == normalise("pull ups")
    assert normalise("brush_hair") == normalise("brushing hair")
    assert normalise("swim") == normalise("swimming") and normalise("kiss") == normalise("kissing")
    assert normalise("climb") != normalise("climbing a rope")


def test_mapping_adds_and_removes_pairs(tmp_path):
    pretrain = ["riding a bike", "archery", "kissing"]
    unknown = ["ride_bike", "shoot_bow", "kiss", "wave"]
    mapping = tmp_path / "map.txt"
    mapping.write_text("# comment\nshoot_bow | archery\nkiss | -\nother_set_class | archery\n")
    pairs = find_overlap(unknown, pretrain, read_mapping(mapping, unknown, pretrain))
    assert [(p.unknown, p.pretrain, p.how, p.line) for p in pairs] == [
        ("ride_bike", "riding a bike", "name", None), ("shoot_bow", "archery", "mapping", 2)]
    mapping.write_text("shoot_bow | archer\n")
    with pytest.raises(OverlapError, match=r"map.txt:1: 'archer' is not a class"):
        read_mapping(mapping, unknown, pretrain)
    mapping.write_text("shoot_bow archery\n")
    with pytest.raises(OverlapError, match="map.txt:1: expected 'unknown class | riding a bike'"):
        read_mapping(mapping, unknown, pretrain)


def test_class_lists_skip_comments_and_read_mit_indices(tmp_path):
    path = tmp_path / "moments_categories.txt"
    path.write_text("# header\nclapping,0\nadult+female+singing,1\n\n")
    assert read_names(path) == ["clapping", "adult+female+singing"]
    path.write_text("a\nb\na\n")
    with pytest.raises(OverlapError, match="'a' already on line 1"):
        read_names(path)


def test_kinetics400_list_is_torchvisions():
    names = pretrain_classes("kinetics400")
    assert len(names) == 400 and names[0] == "abseiling" and "riding a bike" in names
    with pytest.raises(OverlapError, match="known: kinetics400"):
        pretrain_classes("kinetics700")


def test_cli_reports_hmdb51_pairs_against_kinetics400(capsys):
    assert main(["data", "overlap", "--pretrain", "kinetics400", "--unknown", "hmdb51"]) == 0
    out = capsys.readouterr().out
    assert "brush_hair      brushing hair" in out and "name" in out
    assert "shoot_bow       archery" in out and "mapping line" in out
    assert out.strip().endswith("32 of 51 hmdb51 classes are kinetics400 classes (49 pair(s))")
    assert main(["data", "overlap", "--unknown", "hmdb51", "--mapping", "none"]) == 0
    assert "14 of 51 hmdb51 classes" in capsys.readouterr().out
