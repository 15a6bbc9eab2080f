"""Checks before Ray starts: each problem names the config field, the file and the value."""

from __future__ import annotations

import shutil

import pytest

from dear_ray.config import load_config
from dear_ray.train.preflight import PreflightError, check_config, preflight


def _cfg(root, tmp_path, **overrides):
    return load_config({"data": {"data_root": str(root)},
                        "eval": {"every_n_epochs": 0},
                        "tracking": {"run_dir": str(tmp_path / "runs")}}, overrides=overrides)


def test_a_good_config_has_no_problem(synth_root, tmp_path):
    assert check_config(_cfg(synth_root, tmp_path)) == []
    preflight(_cfg(synth_root, tmp_path), tracking_uri=f"sqlite:///{tmp_path}/runs/mlflow.db")


def test_missing_data_root_names_the_field_and_the_folder(tmp_path):
    with pytest.raises(PreflightError) as err:
        preflight(_cfg(tmp_path / "no_such_root", tmp_path))
    assert str(err.value).startswith("data.data_root: folder ")
    assert str(tmp_path / "no_such_root") in str(err.value)


def test_missing_list_and_classes_and_bad_label_are_all_listed(synth_root, tmp_path):
    root = tmp_path / "copy"
    shutil.copytree(synth_root, root)
    (root / "test_shifted.txt").unlink()
    lines = (root / "test.txt").read_text().splitlines()
    lines[1] = lines[1].rsplit(" ", 1)[0] + " 99"
    (root / "test.txt").write_text("\n".join(lines) + "\n")
    problems = check_config(_cfg(root, tmp_path))
    text = "\n".join(problems)
    assert f"data.test_shifted_list: list file {root / 'test_shifted.txt'} does not exist" in text
    assert f"data.test_list: {root / 'test.txt'}:2: label 99 is out of range" in text
    (root / "classes.txt").unlink()
    assert any(p.startswith("data.classes_file:") for p in check_config(_cfg(root, tmp_path)))


def test_unknown_sets_keep_their_own_class_ids(synth_root, tmp_path):
    root = tmp_path / "copy"
    shutil.copytree(synth_root, root)
    lines = (root / "unknown.txt").read_text().splitlines()
    lines[0] = lines[0].rsplit(" ", 1)[0] + " 40"
    (root / "unknown.txt").write_text("\n".join(lines) + "\n")
    assert check_config(_cfg(root, tmp_path)) == []


def test_missing_videos_and_side_inputs_and_checkpoint(synth_root, tmp_path):
    root = tmp_path / "copy"
    shutil.copytree(synth_root, root)
    first = (root / "train.txt").read_text().split()[0]
    (root / first).unlink()
    cfg = _cfg(root, tmp_path, **{"model.pretrained": str(tmp_path / "nope.pth"),
                                  "data.detections": "no_detections.parquet"})
    text = "\n".join(check_config(cfg))
    assert "data.train_list: 1 of the first" in text and first.split("/")[-1] in text
    assert f"model.pretrained: {tmp_path / 'nope.pth'} does not exist" in text
    assert "data.detections:" in text and "no_detections.parquet" in text


def test_run_dir_that_cannot_be_written(synth_root, tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    cfg = load_config({"data": {"data_root": str(synth_root)}, "eval": {"every_n_epochs": 0},
                       "tracking": {"run_dir": str(blocker / "runs")}})
    problems = check_config(cfg)
    assert problems and problems[0].startswith(f"tracking.run_dir: cannot write to {blocker / 'runs'}")


def test_each_problem_is_reported_once_across_many_trials(tmp_path):
    cfgs = [_cfg(tmp_path / "missing", tmp_path, **{"model.head": h}) for h in ("softmax", "edl")]
    with pytest.raises(PreflightError) as err:
        preflight(cfgs)
    assert str(err.value).count("data.data_root") == 1


def test_a_checkpoint_that_does_not_fit_is_found_before_ray(synth_root, tmp_path):
    import torch

    from dear_ray.models import build_recognizer

    other = build_recognizer(backbone="r3d18_tiny", head="softmax", num_classes=3)
    path = tmp_path / "other.pth"
    torch.save({"state_dict": other.state_dict()}, path)
    cfg = _cfg(synth_root, tmp_path, **{"model.pretrained": str(path), "eval_only": True})
    problems = check_config(cfg)
    assert len(problems) == 1 and problems[0].startswith("model.pretrained: ")
    assert "other.pth" in problems[0]


def test_the_validation_unknown_list_is_checked_as_an_unknown_set(synth_root, tmp_path):
    assert check_config(_cfg(synth_root, tmp_path, **{"data.val_unknown": "val_unknown.txt"})) == []
    problems = check_config(_cfg(synth_root, tmp_path, **{"data.val_unknown": "nope.txt"}))
    assert problems == [f"data.val_unknown: list file {synth_root / 'nope.txt'} does not exist"]
    with pytest.raises(Exception, match="unknown set name 'val_unknown'"):
        _cfg(synth_root, tmp_path, **{"data.unknown": {"val_unknown": "unknown.txt"}})
