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
    rows = capsys.readouterr().out.split("\n\n")[-1].splitlines()[1:-1]  # after the stage graph
    # file order is kept, whatever the order given, with the pretraining trial they start from;
    # the override reaches every trial but the pretraining stage's, which sets the field itself
    assert [r.split()[0] for r in rows] == ["pretrain", "softmax", "edl"]
    assert [r.split()[2] for r in rows] == ["1.75", "0.5", "0.5"]

    spec = restrict_sweep(load_sweep(REPO / "jobs/sweeps/demo.yaml"), trials=["sdn"],
                          overrides={"tracking.run_dir": str(tmp_path), "model.head": "edl"})
    _, plan = expand_trials(spec)
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


def _tiny_config(tmp_path, root, **sections):
    import yaml

    cfg = {"name": "tiny", "data": {"data_root": str(root), "clip_len": 8, "crop_size": 32,
                                    "scale_short": 32, "batch_size": 6},
           "optim": {"epochs": 1}, "eval": {"every_n_epochs": 0, "stochastic_passes": 2},
           "resources": {"num_workers": 1, "cpus_per_worker": 1},
           "tracking": {"run_dir": str(tmp_path / "runs")}}
    for key, value in sections.items():
        cfg[key].update(value)
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_train_with_a_missing_data_root_fails_before_ray_naming_the_field(tmp_path, capsys):
    import ray

    path = _tiny_config(tmp_path, tmp_path / "no_data")
    assert main(["train", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("dear-ray: error: PreflightError: data.data_root: folder ")
    assert str(tmp_path / "no_data") in err and len(err.splitlines()) == 1
    assert not ray.is_initialized()
    assert not (tmp_path / "runs" / "tiny" / "ray").exists()


@pytest.mark.slow
def test_train_with_no_workers_runs_the_loop_here_without_a_ray_instance(tmp_path, capsys,
                                                                         sweep_synth, monkeypatch):
    import ray
    from mlflow import MlflowClient

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    path = _tiny_config(tmp_path, sweep_synth, resources={"num_workers": 0},
                        eval={"splits": ["test"]})
    assert main(["train", str(path)]) == 0
    out = capsys.readouterr().out
    assert "Ray logs" not in out and "run tiny finished" in out
    assert "[tiny] epoch 1/1  loss " in out  # the epoch line, as a worker group's run prints it
    assert not ray.is_initialized()
    folder = tmp_path / "runs" / "tiny" / "ray" / "tiny"
    assert [p.name for p in folder.glob("checkpoint_epoch_*")] == ["checkpoint_epoch_0000"]
    client = MlflowClient(f"sqlite:///{tmp_path}/runs/mlflow.db")
    runs = client.search_runs([client.get_experiment_by_name("tiny").experiment_id])
    assert [r.info.status for r in runs] == ["FINISHED"]


def test_train_refuses_a_sweep_file_with_a_pointer_to_sweep(capsys):
    assert main(["train", str(REPO / "jobs/sweeps/demo.yaml")]) == 2
    err = capsys.readouterr().err
    assert "is a sweep file" in err and "dear-ray sweep" in err and "unknown field" not in err


def test_train_run_names_are_numbered_and_resume_takes_the_newest(tmp_path, capsys):
    from dear_ray.cli import CliError
    from dear_ray.commands.run import _run_name
    from dear_ray.config import load_config

    cfg = load_config({"name": "exp", "eval": {"every_n_epochs": 0},
                       "tracking": {"run_dir": str(tmp_path / "runs")}})
    assert _run_name(cfg, resume=False) == "exp"
    with pytest.raises(CliError, match="no earlier run"):
        _run_name(cfg, resume=True)
    storage = tmp_path / "runs" / "exp" / "ray"
    (storage / "exp").mkdir(parents=True)
    (storage / "exp-2").mkdir()
    (storage / "expanded").mkdir()  # another config's name: not counted
    assert _run_name(cfg, resume=False) == "exp-3"
    assert _run_name(cfg, resume=True) == "exp-2"  # no MLflow run: not finished
    (storage / "exp-test").mkdir()  # a `dear-ray test` run: numbered on its own
    assert _run_name(cfg, resume=True) == "exp-2" and _run_name(cfg, resume=False) == "exp-3"
    assert _run_name(cfg, resume=False, suffix="-test") == "exp-test-2"


def test_sweep_on_an_unwritable_store_fails_at_once_and_leaves_no_run(tmp_path, capsys,
                                                                     monkeypatch):
    (tmp_path / "store" / "mlflow.db").mkdir(parents=True)  # a folder where the file should be
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/store/mlflow.db")
    sweep = tmp_path / "s.yaml"
    sweep.write_text(f"name: s\nbase: {{tracking: {{run_dir: {tmp_path / 'runs'}}}}}\n"
                     "grid: {model.head: [softmax]}\n")
    assert main(["sweep", str(sweep)]) == 2
    err = capsys.readouterr().err
    assert "TrackingError" in err and "mlflow.db" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "runs" / "s").exists()


def test_data_check_rejects_a_label_out_of_range(tmp_path, capsys):
    from dear_ray.data.synth import generate_dataset

    root = tmp_path / "d"
    generate_dataset(root, seed=0, workers=1, known_classes=2, unknown_classes=1,
                     videos_per_class=2, frames=4, size=32)
    lines = (root / "test.txt").read_text().splitlines()
    lines[0] = lines[0].rsplit(" ", 1)[0] + " 99"
    (root / "test.txt").write_text("\n".join(lines) + "\n")
    assert main(["data", "check", str(root / "test.txt"), "--root", str(root)]) == 2
    err = capsys.readouterr().err
    assert "test.txt:1: label 99 is out of range" in err
    assert main(["data", "check", str(root / "unknown.txt"), "--root", str(root), "--unknown"]) == 0
