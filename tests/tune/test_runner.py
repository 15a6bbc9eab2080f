"""Tests of dear_ray.tune.runner's Tune set-up that need no Ray cluster (the sweep itself: e2e)."""

from __future__ import annotations

import math
from types import SimpleNamespace

from ray import tune
from ray.tune.schedulers import ASHAScheduler

from dear_ray.tune.runner import _param_space, _tune_config, experiment_name
from dear_ray.tune.sweep import expand_trials, parse_sweep


def _spec(tmp_path, **extra):
    return parse_sweep({"name": "r", "base": {"tracking": {"run_dir": str(tmp_path)},
                                              "optim": {"epochs": 7}},
                        "grid": {"model.head": ["edl", "dear"]}, **extra})


def test_param_space_grids_the_plans_and_samples_the_search(tmp_path):
    spec = _spec(tmp_path, search={"optim.lr": {"type": "loguniform", "low": 1e-4, "high": 1e-2},
                                   "seed": {"type": "randint", "low": 0, "high": 3}})
    space = _param_space(spec, expand_trials(spec))
    assert space["trial"] == tune.grid_search(["head-edl", "head-dear"])
    lr = space["search"]["optim.lr"]
    assert (lr.lower, lr.upper) == (1e-4, 1e-2) and isinstance(lr.get_sampler(), type(
        tune.loguniform(1e-4, 1e-2).get_sampler()))
    seed = space["search"]["seed"]
    assert (seed.lower, seed.upper) == (0, 4)  # randint's high is inclusive in the sweep file
    assert "search" not in _param_space(_spec(tmp_path), expand_trials(_spec(tmp_path)))


def test_tune_config_asha_in_epochs_and_trial_names(tmp_path):
    spec = _spec(tmp_path, scheduler={"metric": "val_top1", "mode": "max", "grace_period": 2},
                 num_samples=2)
    cfg = _tune_config(spec, expand_trials(spec), concurrency=3)
    assert isinstance(cfg.scheduler, ASHAScheduler)
    assert cfg.scheduler._max_t == 7  # optim.epochs: one report an epoch
    assert [m for m, _ in cfg.scheduler._brackets[0]._rungs] == [4, 2]  # grace 2, factor 2
    assert (cfg.metric, cfg.mode, cfg.num_samples, cfg.max_concurrent_trials) == \
        ("val_top1", "max", 2, 3)
    trial = SimpleNamespace(config={"trial": "head-edl"}, trial_id="abc_00001")
    assert cfg.trial_name_creator(trial) == "head-edl_abc_00001"  # samples need distinct names
    single = _tune_config(_spec(tmp_path), expand_trials(_spec(tmp_path)), concurrency=1)
    assert single.trial_name_creator(trial) == "head-edl" and single.scheduler is None


def test_experiment_is_tracking_experiment_or_sweep_name(tmp_path):
    assert experiment_name(_spec(tmp_path)) == "r"
    named = parse_sweep({"name": "r", "base": {"tracking": {"run_dir": str(tmp_path),
                                                            "experiment": "exp"}},
                         "grid": {"seed": [0]}})
    assert experiment_name(named) == "exp"
    assert math.isclose(_spec(tmp_path).trial_resources["CPU"], 0.5)


def test_mixed_settings_names_what_differs_outside_the_sweeps_own_axes(tmp_path):
    """A trial restarted with `--set optim.epochs=2` beside trials of 7 epochs: the report
    mixes budgets the sweep gives all its trials alike; what the sweep itself varies (here
    model.head, and what a head changes in the resolved config) is not news."""
    from dear_ray.tune.runner import mixed_settings

    spec = _spec(tmp_path)
    expected = {p.name: p.config.to_dict() for p in expand_trials(spec)}
    trained = {name: dict(config) for name, config in expected.items()}
    assert mixed_settings(trained, expected, list(trained)) == []
    trained["head-edl"] = {**trained["head-edl"], "optim": {**trained["head-edl"]["optim"], "epochs": 2}}
    assert mixed_settings(trained, expected, list(trained)) == [
        "the trials in this table were trained with different optim.epochs although the sweep "
        "gives them the same: 2 (head-edl); 7 (head-dear)"]
    # a trial the sweep no longer has (renamed, removed) is left out of the comparison
    assert mixed_settings(trained, {"head-dear": expected["head-dear"]}, list(trained)) == []
