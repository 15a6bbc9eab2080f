"""Tests of dear_ray.tune.sweep: sweep YAML parsing, validation errors, grid expansion."""

from __future__ import annotations

import re

from pathlib import Path

import pytest
import yaml

from dear_ray.tune.sweep import (
    SweepError,
    auto_concurrency,
    expand_trials,
    format_trials,
    load_sweep,
    parse_sweep,
    tune_trial_resources,
)


def _write(tmp_path: Path, sweep: dict, name: str = "sw.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(sweep, sort_keys=False))
    return path


def _base(tmp_path: Path) -> dict:
    return {"tracking": {"run_dir": str(tmp_path / "runs")}}


def test_grid_expansion_counts_names_and_overrides(tmp_path):
    path = _write(tmp_path, {
        "name": "g", "base": _base(tmp_path),
        "grid": {"model.head": ["softmax", "edl", "dear"], "seed": [0, 1]}})
    spec = load_sweep(path)
    trials = expand_trials(spec)
    assert len(trials) == 6
    assert [t.name for t in trials[:3]] == ["head-softmax_seed-0", "head-softmax_seed-1",
                                           "head-edl_seed-0"]
    assert trials[3].overrides == {"model.head": "edl", "seed": 1}
    assert trials[3].config.model.head == "edl" and trials[3].config.seed == 1
    assert all(t.config.name == "g" for t in trials)  # stores land under runs/<sweep>/
    assert spec.sweep_dir == (tmp_path / "runs" / "g").resolve()


def test_cases_cross_the_grid_and_couple_overrides(tmp_path):
    path = _write(tmp_path, {
        "base": _base(tmp_path),
        "grid": {"model.head": ["edl", "dear"]},
        "cases": [{"name": "small", "optim.lr": 0.01, "seed": 3},
                  {"optim.lr": 0.02, "seed": 4}]})
    spec = load_sweep(path)
    assert spec.name == "sw"  # the file's stem
    trials = expand_trials(spec)
    assert [t.name for t in trials] == ["small_head-edl", "small_head-dear",
                                        "lr-0.02_seed-4_head-edl", "lr-0.02_seed-4_head-dear"]
    assert trials[2].config.optim.lr == 0.02 and trials[2].config.seed == 4
    assert trials[1].config.optim.lr == 0.01 and trials[1].config.model.head == "dear"


def test_same_leaf_in_two_axes_uses_full_paths(tmp_path):
    spec = parse_sweep({"base": _base(tmp_path), "grid": {"optim.lr": [0.1], "seed": [0]}})
    assert [t.name for t in expand_trials(spec)] == ["lr-0.1_seed-0"]


def test_base_from_a_file_relative_to_the_sweep(tmp_path):
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "b.yaml").write_text(yaml.safe_dump(
        {**_base(tmp_path), "seed": 7}))
    (tmp_path / "jobs").mkdir()
    path = _write(tmp_path / "jobs", {"base": "../configs/b.yaml", "grid": {"model.head": ["edl"]}})
    trials = expand_trials(load_sweep(path))
    assert trials[0].config.seed == 7 and trials[0].config.model.head == "edl"


def test_missing_base_file_names_it(tmp_path):
    path = _write(tmp_path, {"base": "nope.yaml", "grid": {"seed": [0]}})
    with pytest.raises(SweepError, match=r"sw\.yaml: base: config file .*nope\.yaml"):
        load_sweep(path)


def test_unknown_field_path_names_file_axis_and_value(tmp_path):
    path = _write(tmp_path, {"base": _base(tmp_path), "grid": {"optim.lrr": [0.1]}})
    with pytest.raises(SweepError) as info:
        load_sweep(path)
    message = str(info.value)
    assert str(path) in message and "'optim.lrr'" in message and "0.1" in message


def test_bad_value_names_file_axis_and_value(tmp_path):
    path = _write(tmp_path, {"base": _base(tmp_path),
                             "grid": {"model.head": ["edl", "not_a_head"]}})
    with pytest.raises(SweepError) as info:
        load_sweep(path)
    message = str(info.value)
    assert str(path) in message and "'model.head'" in message and "not_a_head" in message


def test_empty_grid_is_an_error(tmp_path):
    path = _write(tmp_path, {"base": _base(tmp_path), "grid": {}})
    with pytest.raises(SweepError, match=r"sw\.yaml: grid: empty"):
        load_sweep(path)
    with pytest.raises(SweepError, match=r"grid axis 'seed': expected a non-empty list"):
        parse_sweep({"grid": {"seed": []}})


@pytest.mark.parametrize(("sweep", "pattern"), [
    ({"grid": {"seed": [0]}, "grdi": {}}, r"unknown key\(s\) \['grdi'\]"),
    ({"grid": {"seed": [0, 0]}}, "repeated values"),
    ({"grid": {"name": ["a", "b"]}}, "cannot vary within a sweep"),
    ({"grid": {"tracking.run_dir": ["a"]}}, "cannot vary within a sweep"),
    ({"grid": {"seed": [0]}, "cases": [{"seed": 1}]}, "also a grid axis"),
    ({"grid": {"seed": [0]}, "num_samples": 0}, "num_samples: expected a positive integer"),
    ({"grid": {"seed": [0]}, "trial_resources": {"CPU": 0}}, "CPU must be > 0"),
    ({"grid": {"seed": [0]}, "scheduler": {"type": "pbt"}}, "only {type: asha"),
    ({"grid": {"seed": [0]}, "scheduler": {"metric": "m", "mode": "up"}}, "mode"),
    ({"grid": {"seed": [0]}, "search": {"optim.lr": {"type": "loguniform", "low": 0,
                                                      "high": 1}}}, "low > 0"),
    ({"grid": {"seed": [0]}, "search": {"optim.lr": {"type": "normal"}}}, "type: one of"),
    ({"grid": {"seed": [0]}, "name": "has space"}, "name 'has space'"),
    ([1, 2], "expected a mapping at the top level"),
])
def test_sweep_level_errors(sweep, pattern):
    with pytest.raises(SweepError, match=pattern):
        parse_sweep(sweep)


def test_search_bounds_are_validated_and_listed(tmp_path):
    spec = parse_sweep({"base": _base(tmp_path), "grid": {"seed": [0]}, "num_samples": 3,
                        "search": {"optim.lr": {"type": "loguniform", "low": 1e-4,
                                                "high": 1e-2}}})
    text = format_trials(expand_trials(spec), spec)
    assert "optim.lr ~ loguniform(0.0001, 0.01)" in text
    assert "3 trial(s) = 1 grid point(s) x 3 sample(s)" in text
    bad = parse_sweep({"base": _base(tmp_path), "grid": {"seed": [0]},
                       "search": {"optim.lr": {"type": "uniform", "low": -1.0, "high": 1.0}}})
    with pytest.raises(SweepError, match=r"search axis 'optim.lr', value -1.0"):
        expand_trials(bad)


def test_format_trials_lists_name_overrides_and_resources(tmp_path):
    spec = parse_sweep({"base": _base(tmp_path), "grid": {"model.head": ["edl", "dear"]},
                        "max_concurrent_trials": 1})
    trials = expand_trials(spec)
    lines = format_trials(trials, spec).splitlines()
    assert lines[0].split() == ["trial", "workers", "CPUs", "GPUs", "methods", "overrides", "|",
                                "fidelity", "|", "cost"]
    workers = trials[0].config.resources.num_workers
    cpus = workers * trials[0].config.resources.cpus_per_worker
    assert lines[1].split()[:5] == ["head-edl", str(workers), f"{cpus:g}", "0", "edl"]
    overrides, fidelity, cost = lines[1].split(" | ")
    assert cost.startswith("params=")
    assert overrides.rstrip().endswith("model.head=edl")
    assert fidelity.startswith("dropout=0.5 nesterov=False dampening=0 groups=default")
    assert "2 trial(s) = 2 grid point(s) x 1 sample(s)" in lines[-1]
    assert "max concurrent 1" in lines[-1]


def test_auto_concurrency_counts_driver_and_worker_resources(tmp_path):
    spec = parse_sweep({"base": _base(tmp_path), "grid": {"resources.cpus_per_worker": [1.0, 0.5]},
                        "trial_resources": {"CPU": 0.5}})
    trials = expand_trials(spec)
    # the largest trial needs 1 worker CPU + 0.5 driver CPU
    assert auto_concurrency(spec, trials, {"CPU": 2.0}) == 1
    assert auto_concurrency(spec, trials, {"CPU": 3.0}) == 2
    assert auto_concurrency(spec, trials, {"CPU": 1.0}) == 1  # never 0
    gpu = parse_sweep({"base": {**_base(tmp_path), "resources": {"use_gpu": True}},
                       "grid": {"seed": [0, 1]}})
    assert auto_concurrency(gpu, expand_trials(gpu), {"CPU": 64.0, "GPU": 3.0}) == 3


def test_an_in_process_trial_holds_its_drivers_and_one_workers_share(tmp_path):
    """`resources.num_workers: 0` in a sweep: the loop runs in the trial's own process, which
    Tune gives the driver's `trial_resources` plus one worker's CPUs (and GPUs); a worker-group
    trial's driver holds only its own share (the workers reserve theirs)."""
    base = {**_base(tmp_path), "resources": {"cpus_per_worker": 0.75}}
    spec = parse_sweep({"base": base, "grid": {"resources.num_workers": [0, 1, 2]},
                        "trial_resources": {"CPU": 0.25}})
    trials = {t.name: t for t in expand_trials(spec)}
    assert [tune_trial_resources(spec, t.config) for t in trials.values()] == [
        {"CPU": 1.0}, {"CPU": 0.25}, {"CPU": 0.25}]
    lines = format_trials(list(trials.values()), spec).splitlines()
    assert [line.split()[1:3] for line in lines[1:4]] == [["0", "0.75"], ["1", "0.75"],
                                                         ["2", "1.5"]]
    local = parse_sweep({"base": {**base, "resources": {"num_workers": 0,
                                                        "cpus_per_worker": 0.75}},
                         "grid": {"seed": [0, 1, 2]}, "trial_resources": {"CPU": 0.25}})
    assert auto_concurrency(local, expand_trials(local), {"CPU": 2.0}) == 2
    gpu = parse_sweep({"base": {**_base(tmp_path), "resources": {
        "num_workers": 0, "use_gpu": True, "gpus_per_worker": 0.5}},
        "grid": {"seed": [0]}, "trial_resources": {"CPU": 1}})
    assert tune_trial_resources(gpu, expand_trials(gpu)[0].config) == {"CPU": 2.0, "GPU": 0.5}


SWEEPS = Path(__file__).resolve().parents[2] / "jobs" / "sweeps"


def _trials(name: str) -> dict:
    return {p.name: p.config for p in expand_trials(load_sweep(SWEEPS / f"{name}.yaml"))}


def test_paper_sweeps_test_views_and_sampling_per_trial():
    """DEAR's inference configs (SPEC section 3) and SDN's test transform, trial by trial; the
    samplers they build give DEAR's frame indices for a 300-frame video."""
    import numpy as np

    from dear_ray.train.data import build_sampler

    dear = _trials("dear_ucf101")
    for name, cfg in dear.items():
        d = cfg.data
        backbone = name.split("_")[0]
        expected = {  # (test scale, test crop, test sampler, segment sampling, clips, crops)
            "i3d": (256, 256, "sample_frames", "uniform", 1, 3),
            "tsm": (256, 224, None, "dense", 10, 1),
            "slowfast": (256, 256, None, "uniform", 10, 3),
            "tpn": (256, 256, None, "uniform", 10, 3),
        }[backbone]
        assert (d.test_scale_short, d.test_crop_size, d.test_sampler, d.segment_sampling,
                d.test_views.num_clips, d.test_views.num_crops) == expected, name
        assert (d.crop_size, d.scale_short) == (224, 256), name
    # I3D: dense 64-frame window in training, one centred SampleFrames(32, 2) clip at test:
    # offset int((300 - 64 + 1) / 2) = 118
    i3d = dear["i3d_dear"].data
    np.testing.assert_array_equal(build_sampler(i3d, test_mode=True)(300, None),
                                  np.arange(118, 182, 2))
    train = build_sampler(i3d, test_mode=False)(300, np.random.default_rng(0))
    assert train[0] < 300 - 64 and np.array_equal(np.diff(train), np.full(31, 2))
    # TSM: 8 frames 8 apart in a 64-frame window; at test 10 windows at linspace(0, 236, 10)
    tsm = dear["tsm_softmax"].data
    views = build_sampler(tsm, test_mode=True)(300, None).reshape(10, 8)
    starts = [0, 26, 52, 78, 104, 131, 157, 183, 209, 236]
    np.testing.assert_array_equal(views, np.array(starts)[:, None] + np.arange(0, 64, 8))
    train = build_sampler(tsm, test_mode=False)(300, np.random.default_rng(0))
    assert train[0] < 300 - 64 and np.array_equal(np.diff(train), np.full(7, 8))

    sdn = {**_trials("sdn_minikinetics"), **_trials("sdn_finetune_diving48")}
    assert len(sdn) == 6
    for name, cfg in sdn.items():
        d = cfg.data
        assert (d.crop_size, d.test_scale_short, d.test_crop_size, d.test_views.num_crops) == \
            (112, 112, 112, 1), name


def _crop_boxes(data, height: int, width: int, draws: int = 400) -> set[tuple[int, int, int, int]]:
    import numpy as np

    from dear_ray.data.transforms import MultiScaleCrop, RandomResizedCrop
    from dear_ray.train.data import build_transform

    (crop,) = [op for op in build_transform(data, test_mode=False).ops
               if isinstance(op, (MultiScaleCrop, RandomResizedCrop))]
    rng = np.random.default_rng(0)
    return {crop.crop_box(height, width, rng) for _ in range(draws)}


def test_paper_sweeps_training_crops():
    """DEAR's training crops: I3D MultiScaleCrop(scales (1, 0.8), square, 5 fixed positions), TSM
    MMAction2's TSM MultiScaleCrop (13 positions, w/h one level apart); SDN's MultiScaleCornerCrop
    (5 squares 2^(-1/4) apart at the corners and centre of 240-px frames)."""
    dear = _trials("dear_ucf101")
    # frames resized to short side 256: 256 x 340
    i3d = _crop_boxes(dear["i3d_dear"].data, 256, 340)
    assert {(h, w) for _, _, h, w in i3d} == {(256, 256), (204, 204)}
    assert {(t, l) for t, l, h, _ in i3d if h == 204} == \
        {(0, 0), (0, 136), (52, 0), (52, 136), (26, 68)}  # 4 corners + centre, (340-204)//4 steps
    tsm = _crop_boxes(dear["tsm_bnn"].data, 256, 340, draws=2000)
    assert {(h, w) for _, _, h, w in tsm} >= {(256, 224), (224, 256), (192, 168)}
    assert not {(h, w) for _, _, h, w in tsm} & {(256, 192), (192, 256)}  # gap 1 only
    assert len({(t, l) for t, l, h, w in tsm if (h, w) == (192, 168)}) == 13
    for name, cfg in dear.items():
        tpn = name.startswith("tpn")
        assert cfg.data.color_jitter is tpn, name  # TPN's ColorJitter(color_space_aug=True)
        assert (cfg.data.train_crop == "random_resized") is (tpn or name.startswith("slowfast")), name

    sdn = {**_trials("sdn_minikinetics"), **_trials("sdn_finetune_diving48")}
    for name, cfg in sdn.items():
        boxes = _crop_boxes(cfg.data, 240, 320, draws=1000)
        assert {(h, w) for _, _, h, w in boxes} == {(s, s) for s in (240, 201, 169, 142, 120)}, name
        assert len({(t, l) for t, l, h, _ in boxes if h == 120}) == 5, name


# ------------------------------------------------------------------------------------------------
# Issue 10: the paper sweeps' released settings, trial by trial, and the dry run that shows them


def test_dear_sweep_dropout_nesterov_groups_and_schedules_as_dear_configs():
    """DEAR b752998 configs/recognition/*: every *_bnn.py has dropout_ratio=0; every TPN config
    nesterov=True; the TSM dnn / edlnokl_avuc_debias configs use TSMOptimizerConstructor with
    fc_lr5 and the TSM bnn / rpl configs plain SGD; SlowFast CosineAnnealing (by epoch) after a
    5-epoch linear warm-up per iteration (warmup_by_epoch, ratio 0.1)."""
    dear = _trials("dear_ucf101")
    assert len(dear) == 16
    for name, cfg in dear.items():
        backbone, head = name.split("_")
        o = cfg.optim
        assert cfg.model.dropout == (0.0 if head == "bnn" else 0.5), name
        assert o.nesterov is (backbone in ("i3d", "slowfast", "tpn")), name
        groups = "tsm_fc_lr5" if backbone == "tsm" and head in ("softmax", "dear") else "default"
        assert (o.param_groups, o.classifier_lr_mult, o.dampening) == (groups, 1.0, 0.0), name
        if backbone == "slowfast":
            assert (o.schedule, o.step_per, o.warmup_per, o.warmup_epochs, o.warmup_start) == \
                ("cosine", "epoch", "iteration", 5, 0.1), name
        else:
            assert (o.schedule, o.milestones, o.step_per, o.warmup_epochs) == \
                ("step", [20, 40], "epoch", 0), name
        assert cfg.data.mean == (123.675, 116.28, 103.53), name
        assert cfg.data.std == (58.395, 57.12, 57.375), name
        assert cfg.data.flip is True, name
        assert (cfg.eval.average_clips, cfg.eval.precision) == ("released", "fp32"), name


def test_sdn_sweeps_dampening_normalisation_and_mask_batch():
    """SDN b92b9ca: train.py passes dampening=opt.dampening (0.9) without nesterov; libs/mean.py
    ActivityNet mean on 0-255 with Normalize(mean, [1, 1, 1]); datasets/kinetics.py masks only
    videos with a box scored > 0.3 in >= 70% of the frames; libs/train_epoch.py a second step."""
    sdn = {**_trials("sdn_minikinetics"), **_trials("sdn_finetune_diving48")}
    for name, cfg in sdn.items():
        assert (cfg.optim.dampening, cfg.optim.nesterov) == (0.9, False), name
        assert cfg.data.mean == (114.7748, 107.7354, 99.475) and cfg.data.std == (1, 1, 1), name
        assert cfg.data.flip is True, name                      # RandomHorizontalFlip
        assert (cfg.eval.average_clips, cfg.eval.precision) == ("released", "fp32"), name
    full = sdn["full"]
    assert (full.data.mask_min_human_fraction, full.data.mask_min_box_score) == (0.7, 0.3)
    assert full.optim.sdn_mask_step == "separate"
    assert full.model.head_options["mask_step_scene_bn"] is True  # the whole model runs


PAPER_SWEEPS = ("dear_ucf101", "dear_ucf101_zoo", "sdn_minikinetics", "sdn_finetune_diving48",
                "psl_ucf101")


def test_paper_sweeps_train_in_fp32_as_released_and_bf16_is_the_option():
    """DEAR's configs have no `fp16` (only MMAction2's tsn_fp16 config has one) and SDN, PSL train
    in fp32: no autocast in any paper-sweep trial, even on its GPU workers (the loop's autocast is
    the driver's `resources.amp and on_gpu`); `resources.amp: true` asks for bf16 autocast. The
    demo runs on CPU, where autocast is off whatever resources.amp says."""
    import contextlib
    import warnings

    import torch

    from dear_ray.train.loop import autocast

    cuda = torch.device("cuda")
    for sweep in PAPER_SWEEPS:
        for name, cfg in _trials(sweep).items():
            assert cfg.resources.use_gpu and cfg.resources.amp is False, (sweep, name)
            assert isinstance(autocast(cuda, cfg.resources.amp), contextlib.nullcontext)
            assert cfg.eval.precision == "fp32", (sweep, name)
    with warnings.catch_warnings():  # a CPU-only torch warns that CUDA autocast is unavailable
        warnings.simplefilter("ignore")
        option = autocast(cuda, True)
    assert isinstance(option, torch.autocast) and option.fast_dtype == torch.bfloat16
    for sweep in ("demo", "demo_seeds"):
        assert {cfg.resources.use_gpu for cfg in _trials(sweep).values()} == {False}, sweep


def test_sdn_sweeps_use_sdns_shortcut_and_test_averaging_the_demo_keeps_its_own():
    """SDN's shortcut A without gradient and libs/test.py's per-clip softmax for every SDN trial;
    the demo's r3d18_tiny keeps the gradient through its shortcuts and DEAR's view rules."""
    from dear_ray.models.backbones.r3d18 import shortcut_setting
    from dear_ray.train.evaluation import average_clips_for

    sdn = {**_trials("sdn_minikinetics"), **_trials("sdn_finetune_diving48")}
    for name, cfg in sdn.items():
        m = cfg.model
        assert shortcut_setting(m.backbone, m.backbone_options) == "A/detached", name
        assert {average_clips_for(m.head, s, cfg.eval.average_clips, backbone=m.backbone,
                                  stochastic=st)
                for s in cfg.eval_splits() for st in (False, True)} == {"prob"}, name
    for sweep in ("demo", "demo_seeds"):
        for name, cfg in _trials(sweep).items():
            m = cfg.model
            assert m.backbone == "r3d18_tiny" and "detach_shortcut" not in m.backbone_options
            assert shortcut_setting(m.backbone, m.backbone_options) == "A", (sweep, name)
            if m.head == "softmax":
                assert average_clips_for("softmax", "test", "released", backbone=m.backbone) == \
                    "score"


def test_sdn_scene_adv_warm_up_lasts_sdns_four_epochs():
    """SDN train.py: `for i in range(1, n_epochs + 1): if i < warm_up_epochs:` the first optimiser
    (new layers only). With the README's --warm_up_epochs 5 that is epochs 1..4; the full model's
    --warm_up_epochs 0 gives none. The sweep's scheduler must freeze the pretrained parameters for
    exactly those epochs."""
    from torch import nn

    from dear_ray.train.optim import build_optimizer, build_scheduler

    sdn_warm = {name: sum(1 for i in range(1, 10 + 1) if i < warm) for name, warm in
                (("scene_adv", 5), ("full", 0), ("baseline", 0))}
    assert sdn_warm == {"scene_adv": 4, "full": 0, "baseline": 0}
    trials = _trials("sdn_minikinetics")

    class Toy(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.backbone = nn.Linear(2, 2)
            self.cls_head = nn.Module()
            self.cls_head.fc_cls = nn.Linear(2, 2)
            self.cls_head.scene_mlp = nn.Linear(2, 2)

        def classifier_parameter_names(self) -> set[str]:
            return {"cls_head.fc_cls.weight", "cls_head.fc_cls.bias"}

    for name, expected in sdn_warm.items():
        cfg = trials[name].optim
        opt = build_optimizer(Toy(), cfg, {"cls_head.scene_mlp.weight", "cls_head.scene_mlp.bias"})
        sched = build_scheduler(opt, cfg, iters_per_epoch=2)
        frozen_epochs = 0
        for epoch in range(10):
            pretrained = [g for g in opt.param_groups if not g["new"]]
            frozen_epochs += all(g["lr"] == 0.0 for g in pretrained)
            for _ in range(2):
                opt.step()
                sched.step()
        assert frozen_epochs == expected, name


def test_dry_run_shows_each_trials_fidelity_settings(tmp_path):
    """The dry run of the paper sweeps names, per trial, the settings that decide fidelity."""
    trials = expand_trials(load_sweep(SWEEPS / "dear_ucf101.yaml"))
    full = {t.name: line.split(" | ")[1] for t, line in
            zip(trials, format_trials(trials).splitlines()[1:-1], strict=True)}
    # the report's settings close every line: the released rounding, thresholds and draws
    assert all(v.endswith(" test_rounding=mmaction2 threshold_print=released subset_draws=shared")
               for v in full.values())
    assert all(v.endswith(" test_rounding=sdn threshold_print=released subset_draws=shared")
               for v in _dry_run("sdn_minikinetics", core=False).values())
    assert not any("mit_known_rows" in v for v in full.values())  # a PSL-protocol setting
    dear = {name: _core(v) for name, v in full.items()}
    assert "dropout=0 nesterov=True" in dear["i3d_bnn"]
    assert "dropout=0.5 nesterov=True" in dear["tpn_softmax"]
    assert "groups=tsm_fc_lr5(5x/10x:cls_head.debias_head.f3_fc)" in dear["tsm_dear"]
    assert "groups=tsm_fc_lr5(5x/10x:cls_head.fc_cls)" in dear["tsm_softmax"]
    assert "groups=default " in dear["tsm_rpl"]
    assert "lr=cosine/epoch+warmup5/iteration" in dear["slowfast_dear"]
    assert all("norm=mmaction2 flip=True resize=cv2 views=released" in v
               and v.endswith("precision=train:fp32,eval:fp32") and "shortcut=" not in v
               for v in dear.values())
    assert "views=released->train:prob,test:score,hmdb51:score,mit_v2:score " in dear["i3d_softmax"]
    zoo = _dry_run("dear_ucf101_zoo")  # no training: the test-time settings only
    assert zoo["tpn_bnn"] == "dropout=0 norm=mmaction2 resize=cv2 views=released->prob precision=eval:fp32"
    assert all("nesterov" not in v and "lr=" not in v and v.endswith("precision=eval:fp32")
               for v in zoo.values())
    sdn = _dry_run("sdn_minikinetics")
    assert "dampening=0.9" in sdn["scene_adv"] and "norm=sdn_activitynet" in sdn["scene_adv"]
    assert sdn["baseline"].endswith(
        "shortcut=A/detached views=released->prob precision=train:fp32,eval:fp32")
    assert sdn["scene_adv"].endswith("precision=train:fp32,eval:fp32 new_layers_warmup=4ep")
    assert sdn["full"].endswith("views=released->prob precision=train:fp32,eval:fp32 "
                                "mask_step=separate+scene_bn")
    assert all("shortcut=A/detached views=released->prob" in v
               for v in _dry_run("sdn_finetune_diving48").values())
    assert all("precision=train:fp32,eval:fp32" in v for v in _dry_run("psl_ucf101").values())
    demo = _dry_run("demo")
    assert all("shortcut=A views=released" in v and "precision=train:fp32,eval:fp32" in v
               for v in demo.values())
    assert "views=released->train:prob,test:score" in demo["softmax"]
    assert demo["sdn"].endswith("mask_step=separate+scene_bn")
    # a trial off the released settings shows them as they are
    spec = parse_sweep({"base": {**_base(tmp_path), "model": {"backbone": "tsm_tiny"},
                                 "optim": {"param_groups": "tsm_fc_lr5_classifier"},
                                 "data": {"mean": [0, 0, 0], "std": [1, 1, 1]},
                                 "eval": {"average_clips": "prob", "precision": "amp"}},
                        "grid": {"model.head": ["dear"]}})
    (line,) = format_trials(expand_trials(spec)).splitlines()[1:-1]
    assert "groups=tsm_fc_lr5_classifier(5x/10x:cls_head.fc_cls)" in line
    assert _core(line.split(" | ")[1]).endswith("norm=mean[0.0, 0.0, 0.0]/std[1.0, 1.0, 1.0] flip=False resize=cv2 "
                         "views=prob precision=train:fp32,eval:fp32")  # CPU: no autocast
    spec = parse_sweep({"base": {**_base(tmp_path), "model": {"backbone": "r3d18_a"},
                                 "resources": {"use_gpu": True, "amp": True}},
                        "cases": [{"name": "amp_stores", "eval.precision": "amp",
                                   "model.backbone_options": {"detach_shortcut": False}},
                                  {"name": "fp32_stores", "model.head": "sdn",
                                   "model.head_options": {"mask_step_scene_bn": False},
                                   "data.scene_labels": "s.npy", "data.detections": "d.npy"}]})
    amp, fp32 = format_trials(expand_trials(spec)).splitlines()[1:-1]
    assert "shortcut=A views=released->prob precision=train:bf16,eval:bf16" in amp
    assert _core(fp32.split(" | ")[1]).endswith("shortcut=A/detached views=released->prob "
                         "precision=train:bf16,eval:fp32 mask_step=separate")


_REPORT_FIELDS = re.compile(r" (test_rounding|threshold_print|subset_draws|mit_known_rows)=\S+")


def _core(fidelity: str) -> str:
    """A dry-run fidelity text without the report's settings that close it."""
    return _REPORT_FIELDS.sub("", fidelity)


def _dry_run(sweep: str, *, core: bool = True) -> dict[str, str]:
    """The fidelity part of each trial's dry-run line (after a sweep's stage graph, if any),
    without the report's settings unless `core` is False."""
    plans = expand_trials(load_sweep(SWEEPS / f"{sweep}.yaml"))
    lines = format_trials(plans).split("\n\n")[-1].splitlines()[1:-1]
    text = {t.name: line.split(" | ")[1] for t, line in zip(plans, lines, strict=True)}
    return {name: _core(v) if core else v for name, v in text.items()}


def test_a_fidelity_field_is_one_entry(tmp_path, monkeypatch):
    """Another setting joins the dry run with one `FIDELITY_FIELDS` entry; None leaves it out."""
    from dear_ray.tune import _sections

    fields = [*_sections.FIDELITY_FIELDS,
              ("seed_parity", lambda cfg: "even" if cfg.seed % 2 == 0 else None)]
    monkeypatch.setattr(_sections, "FIDELITY_FIELDS", fields)
    spec = parse_sweep({"base": _base(tmp_path), "grid": {"seed": [0, 1]}})
    even, odd = format_trials(expand_trials(spec)).splitlines()[1:-1]
    assert even.split(" | ")[1].endswith(" seed_parity=even") and "seed_parity" not in odd


def test_dry_run_prints_parameters_and_gflops_of_the_foundation_sweep():
    from tests.models._backbones import HAS_TRANSFORMERS

    spec = load_sweep(SWEEPS / "foundation_ucf101.yaml")
    trials = expand_trials(spec)
    assert len(trials) == 16
    lines = {t.name: line for t, line in zip(trials, format_trials(trials).splitlines()[1:-1], strict=True)}
    # Swin-T + a 101-class Linear; frozen: the Linear alone (768 x 101 + 101)
    cost = {name: line.split(" | ")[2] for name, line in lines.items()}
    assert cost["swin3d_t_head-softmax_freeze_backbone-False"] == "params=27.9M trainable=27.93M gflops=175.5"
    assert cost["swin3d_t_head-softmax_freeze_backbone-True"] == "params=27.9M trainable=0.08M gflops=175.5"
    if HAS_TRANSFORMERS:  # the preset ViT-B (the hf_dir folder is not on this machine)
        assert cost["videomae_b_head-edl_freeze_backbone-True"] == "params=86.3M trainable=0.08M gflops=360.7"
    else:
        assert cost["videomae_b_head-edl_freeze_backbone-True"].startswith("params=n/a")
