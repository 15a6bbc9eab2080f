"""The `dear-ray` command: argument handling and the commands that need no Ray cluster."""

from pathlib import Path

import pytest

from dear_ray.cli import main

REPO = Path(__file__).resolve().parents[1]


def test_data_synth_writes_dataset_and_prints_summary(tmp_path, capsys):
    out = tmp_path / "synth"
    args = ["data", "synth", "--out", str(out), "--known-classes", "3", "--unknown-classes", "2",
            "--videos-per-class", "2", "--frames", "8", "--size", "32", "--workers", "1"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "known classes (3)" in printed
    for name in ["train.txt", "test.txt", "test_shifted.txt", "unknown.txt", "classes.txt",
                 "manifest.json"]:
        assert (out / name).is_file(), name
    # a second run refuses to overwrite the finished data set
    assert main(args) == 2
    assert "not empty" in capsys.readouterr().err
    assert main(["data", "summary", str(out)]) == 0
    assert "known classes (3)" in capsys.readouterr().out


def test_dry_run_lists_demo_trials(capsys):
    assert main(["sweep", "--dry-run", str(REPO / "jobs/sweeps/demo.yaml")]) == 0
    out = capsys.readouterr().out
    for head in ["softmax", "bnn", "rpl", "edl", "edl_avu", "dear", "sdn"]:
        assert head in out


def test_sweep_set_and_trials_restrict_the_sweep(tmp_path, capsys):
    from dear_ray.tune import expand_trials, load_sweep, restrict_sweep

    args = ["sweep", "--dry-run", str(REPO / "jobs/sweeps/demo.yaml"), "--trials", "edl, softmax",
            "--set", "resources.cpus_per_worker=0.5"]
    assert main(args) == 0
    rows = capsys.readouterr().out.splitlines()[1:-1]
    # file order is kept, whatever the order given; the override reaches every trial
    assert [r.split()[0] for r in rows] == ["softmax", "edl"]
    assert [r.split()[2] for r in rows] == ["0.5", "0.5"]

    spec = restrict_sweep(load_sweep(REPO / "jobs/sweeps/demo.yaml"), trials=["sdn"],
                          overrides={"tracking.run_dir": str(tmp_path), "model.head": "edl"})
    (plan,) = expand_trials(spec)
    # the case's own model.head wins over the base override; the run folder follows --set
    assert plan.config.model.head == "sdn" and spec.sweep_dir == tmp_path / "demo"

    assert main(args[:3] + ["--trials", "softmax,nope"]) == 2
    assert "no trial named ['nope']" in capsys.readouterr().err
    assert main(args[:3] + ["--set", "optim.epochs=0"]) == 2
    assert "--set {'optim.epochs': 0}: optim.epochs" in capsys.readouterr().err


def test_dry_run_of_paper_grid_lists_four_backbones_with_resources(capsys):
    assert main(["sweep", "--dry-run", str(REPO / "jobs/sweeps/dear_ucf101.yaml")]) == 0
    lines = capsys.readouterr().out.splitlines()
    rows = [line.split(maxsplit=5) for line in lines[1:-1]]
    assert lines[0].split()[:5] == ["trial", "workers", "CPUs", "GPUs", "methods"]
    methods = {}
    for name, workers, cpus, gpus, reported, overrides in rows:
        backbone = overrides.split(",")[0].removeprefix("model.backbone=")
        methods.setdefault(backbone, []).extend(reported.split(","))
        assert (workers, cpus, gpus) == ("1", "7", "1") and "model.pretrained=" in overrides
    # 4 backbones x the paper's 6 methods (MC Dropout and OpenMax come from the softmax trial)
    assert {b: sorted(m) for b, m in methods.items()} == {
        b: ["bnn", "dear", "mc_dropout", "openmax", "rpl", "softmax"]
        for b in ["i3d_r50", "tsm_r50", "slowfast_r50_8x8", "tpn_slowonly_r50"]}
    assert lines[-1].startswith("16 trial(s) = 16 grid point(s)")


def test_bad_override_and_missing_files_give_one_line_errors(tmp_path, capsys):
    assert main(["train", str(REPO / "jobs/sweeps/demo.yaml"), "--set", "nonsense"]) == 2
    assert "FIELD=VALUE" in capsys.readouterr().err
    assert main(["evaluate", str(tmp_path / "nowhere"), "--out", str(tmp_path / "o")]) == 2
    assert "nowhere" in capsys.readouterr().err
    assert main(["sweep", "--dry-run", str(tmp_path / "missing.yaml")]) == 2
    assert "missing.yaml" in capsys.readouterr().err


def test_unknown_command_is_rejected():
    with pytest.raises(SystemExit) as exc:
        main(["frobnicate"])
    assert exc.value.code == 2


def test_export_writes_the_weights_of_a_training_checkpoint(tmp_path, capsys):
    import torch

    from dear_ray.models import build_recognizer
    from dear_ray.train.checkpointing import save_checkpoint

    model = build_recognizer(backbone="i3d_tiny", head="softmax", num_classes=3)
    folder = save_checkpoint(tmp_path / "checkpoint_epoch_0001", model=model, epoch=1,
                             global_step=5)
    assert main(["export", str(folder), str(tmp_path / "w.pth")]) == 0
    saved = torch.load(tmp_path / "w.pth", weights_only=True)["state_dict"]
    assert all(torch.equal(saved[k], v) for k, v in model.state_dict().items())
    assert main(["export", str(tmp_path), str(tmp_path / "x.pth")]) == 2
    assert "has no state.pt" in capsys.readouterr().err
