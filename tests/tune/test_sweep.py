"""Tests of dear_ray.tune.sweep: sweep YAML parsing, validation errors, grid expansion."""

from __future__ import annotations

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
    assert lines[0].split() == ["trial", "workers", "CPUs", "GPUs", "methods", "overrides"]
    workers = trials[0].config.resources.num_workers
    cpus = workers * trials[0].config.resources.cpus_per_worker
    assert lines[1].split()[:5] == ["head-edl", str(workers), f"{cpus:g}", "0", "edl"]
    assert lines[1].endswith("model.head=edl")
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
