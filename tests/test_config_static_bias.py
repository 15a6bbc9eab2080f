"""`data.static_bias`: SCUBA / SCUFO-style lists, their resolution, validation and file checks."""

from __future__ import annotations

import pickle

import pytest

from dear_ray.config import ConfigError, load_config
from dear_ray.config.data import check_static_bias_lists


def test_synth_resolves_to_the_generators_lists_and_other_data_sets_to_none(tmp_path):
    cfg = load_config({"data": {"data_root": str(tmp_path)}})
    lists = cfg.data.split_lists()
    assert lists["test_scuba"] == tmp_path / "test_scuba.txt" and lists["test_scufo"] == tmp_path / "test_scufo.txt"
    assert cfg.to_dict()["data"]["static_bias"] is None  # resolved, written back as null
    assert load_config(cfg.to_dict()) == cfg
    again = pickle.loads(pickle.dumps(cfg))  # Ray ships configs to workers pickled
    assert again == cfg and again.to_dict()["data"]["static_bias"] is None
    assert cfg.override({"data.dataset": "ucf101"}).data.static_bias is None  # re-resolved
    real = load_config({"data": {"dataset": "ucf101", "data_root": str(tmp_path)}})
    assert real.data.static_bias is None and "test_scuba" not in real.data.split_lists()
    mimetics = real.override({"data.static_bias": {"scuba": "/lists/mimetics.txt"}})
    assert mimetics.data.split_lists()["test_scuba"].as_posix() == "/lists/mimetics.txt"
    assert "test_scufo" not in mimetics.data.split_lists()
    assert mimetics.to_dict()["data"]["static_bias"] == {"scuba": "/lists/mimetics.txt", "scufo": None}
    assert load_config(mimetics.to_dict()) == mimetics
    evaluated = load_config({"data": {"data_root": str(tmp_path)},
                             "eval": {"splits": ["train", "test", "test_scuba", "test_scufo", "unknown"]}})
    assert evaluated.eval_splits()[2:4] == ["test_scuba", "test_scufo"]


@pytest.mark.parametrize(("value", "message"), [
    ({"scuba": "a.txt", "scufo": "a.txt"}, "data.static_bias: scuba and scufo name the same list 'a.txt'"),
    ({"scufo": "b.txt"}, "data.static_bias.scuba: Field required"),
    ({"scuba": ""}, "data.static_bias: scuba: expected a list file path"),
    ({"scuba": "a.txt", "pairs": "x"}, "data.static_bias.pairs: unknown field"),
])
def test_bad_values_name_the_field(value, message):
    with pytest.raises(ConfigError, match=message):
        load_config({"data": {"static_bias": value}})


def test_static_bias_split_names_are_reserved():
    with pytest.raises(ConfigError, match="not one of the known split names .*'test_scufo'"):
        load_config({"data": {"unknown": {"test_scufo": "x.txt"}}})


def _lists(root, scuba: list[str], scufo: list[str]):
    (root / "scuba.txt").write_text("".join(line + "\n" for line in scuba))
    (root / "scufo.txt").write_text("".join(line + "\n" for line in scufo))
    return load_config({"data": {"dataset": "ucf101", "data_root": str(root), "num_classes": 3,
                                 "static_bias": {"scuba": "scuba.txt", "scufo": "scufo.txt"}}}).data


SCUBA = ["scuba/a__0.mp4 0", "scuba/b__0.mp4 16 1", "scuba/c__0.mp4 2"]
SCUFO = ["scufo/a__0.mp4 0", "scufo/b__0.mp4 16 1", "scufo/c__0.mp4 2"]


def test_list_files_are_checked_for_pairing_and_labels(tmp_path):
    assert check_static_bias_lists(_lists(tmp_path, SCUBA, SCUFO), 3) == []
    assert check_static_bias_lists(_lists(tmp_path, SCUBA, SCUFO[::-1]), 3) == []  # paired by id, not line
    short = check_static_bias_lists(_lists(tmp_path, SCUBA, SCUFO[:2]), 3)
    assert any("data.static_bias.scufo:" in p and "has 2 videos" in p and "has 3" in p for p in short)
    assert any("has no video of id 'c__0'" in p for p in short)
    wrong = check_static_bias_lists(_lists(tmp_path, SCUBA, [*SCUFO[:2], "scufo/c__0.mp4 1"]), 3)
    assert wrong == [f"data.static_bias.scufo: {tmp_path / 'scufo.txt'}:3: label 1, but its SCUBA video "
                     f"({tmp_path / 'scuba.txt'}:3) has label 2"]
    stray = check_static_bias_lists(_lists(tmp_path, SCUBA, [*SCUFO[:2], "scufo/d__0.mp4 2"]), 3)
    assert any("video id 'd__0' is not in" in p for p in stray)
    out_of_range = check_static_bias_lists(_lists(tmp_path, [*SCUBA[:2], "scuba/c__0.mp4 7"], SCUFO), 3)
    assert len(out_of_range) == 1 and out_of_range[0].startswith("data.static_bias.scuba: ")
    assert "label 7 is out of range; expected [0, 3)" in out_of_range[0]
    twice = check_static_bias_lists(_lists(tmp_path, [*SCUBA, "other/a__0.mp4 0"], SCUFO), 3)
    assert any("video id 'a__0' again (first on line 1)" in p for p in twice)
    data = _lists(tmp_path, SCUBA, SCUFO)
    (tmp_path / "scufo.txt").unlink()
    assert check_static_bias_lists(data, 3) == [f"data.static_bias.scufo: list file {tmp_path / 'scufo.txt'} "
                                                "does not exist"]


def test_evaluation_refuses_unpaired_lists_before_scoring(tmp_path):
    from dear_ray.train.evaluation import check_static_bias, store_name

    _lists(tmp_path, SCUBA, SCUFO[:2])
    base = {"data": {"dataset": "ucf101", "data_root": str(tmp_path), "num_classes": 3,
                     "static_bias": {"scuba": "scuba.txt", "scufo": "scufo.txt"}}}
    # not evaluated: not checked
    check_static_bias(load_config({**base, "eval": {"splits": ["train", "test"]}}), 3)
    cfg = load_config(base)  # the default eval splits include the static-bias ones
    with pytest.raises(ValueError, match="static-bias lists cannot be scored:\ndata.static_bias.scufo"):
        check_static_bias(cfg, 3)
    assert store_name("test_scuba") == "test_scuba" and store_name("mimetics") == "unknown_mimetics"
