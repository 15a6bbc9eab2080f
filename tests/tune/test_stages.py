"""Sweeps with stages: parsing and validation of the stage graph, what a resume compares, the
demo's and SDN's two-stage sweeps (no Ray here; the runs: test_stages_e2e.py)."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

from dear_ray.cli import main
from dear_ray.tune._state import changed_trials, with_source
from dear_ray.tune.stage_runner import report_trials
from dear_ray.tune.sweep import (
    SweepError,
    expand_trials,
    format_trials,
    load_sweep,
    parse_sweep,
    restrict_sweep,
)

REPO = Path(__file__).resolve().parents[2]
SWEEPS = REPO / "jobs" / "sweeps"


def _sweep(tmp_path, stages, **extra):
    return {"name": "st", "base": {"tracking": {"run_dir": str(tmp_path / "runs")},
                                   "optim": {"epochs": 3}},
            "stages": stages, **extra}


def _two(tmp_path, **extra):
    return _sweep(tmp_path, [
        {"name": "pre", "base": {"optim": {"lr": 0.5}, "data.batch_size": 4},
         "cases": [{"name": "a", "model.head": "softmax"}, {"name": "b", "model.head": "edl"}]},
        {"name": "ft", "base": {"model.pretrained": {"from": "pre/a"}},
         "cases": [{"name": "x", "model.head": "dear"},
                   {"name": "y", "model.head": "edl", "model.pretrained": {"from": "pre/b"}},
                   {"name": "z", "model.head": "softmax", "model.pretrained": "/tmp/ckpt.pth"}]},
    ], **extra)


def test_stages_expand_in_order_with_their_base_and_sources(tmp_path):
    spec = parse_sweep(_two(tmp_path))
    plans = expand_trials(spec)
    assert [(p.stage, p.name, p.source) for p in plans] == [
        ("pre", "a", None), ("pre", "b", None),
        ("ft", "x", "pre/a"), ("ft", "y", "pre/b"), ("ft", "z", None)]
    pre, ft = plans[0].config, plans[2].config
    # the stage's base merges into the sweep's: lr changed, epochs kept; dotted keys too
    assert (pre.optim.lr, pre.optim.epochs, pre.data.batch_size) == (0.5, 3, 4)
    assert ft.optim.lr != 0.5 and ft.optim.epochs == 3
    assert ft.model.pretrained is None  # resolved when the stage starts
    assert {p.config.name for p in plans} == {"st"}
    # a case's own `from`, or its own checkpoint path, wins over the stage base's `from`
    assert plans[4].config.model.pretrained == "/tmp/ckpt.pth"
    assert report_trials(spec, plans) == ["x", "y", "z"]


def test_a_sweep_without_stages_is_as_before(tmp_path):
    spec = parse_sweep({"name": "flat", "base": {"tracking": {"run_dir": str(tmp_path)}},
                        "grid": {"model.head": ["softmax", "edl"]}})
    plans = expand_trials(spec)
    assert [(p.name, p.stage, p.source) for p in plans] == [
        ("head-softmax", "", None), ("head-edl", "", None)]
    assert report_trials(spec, plans) is None
    assert not format_trials(plans, spec).startswith("stages")


@pytest.mark.parametrize(("edit", "pattern"), [
    (lambda s: s[1]["cases"][0].update({"model.pretrained": {"from": "nope/a"}}),
     r"stages\[1\] \(ft\), trial 'x': model.pretrained.from 'nope/a': no stage 'nope'; "
     r"the stages are \['pre', 'ft'\]"),
    (lambda s: s[1]["cases"][0].update({"model.pretrained": {"from": "pre/q"}}),
     r"trial 'x': model.pretrained.from 'pre/q': stage 'pre' has no trial 'q'; its trials are "
     r"\['a', 'b'\]"),
    (lambda s: s[1]["cases"][0].update({"model.pretrained": {"from": "ft/y"}}),
     r"trial 'x': model.pretrained.from 'ft/y': names a trial of its own stage"),
    (lambda s: s[0]["cases"][0].update({"model.pretrained": {"from": "ft/x"}}),
     r"stages\[0\] \(pre\), trial 'a': model.pretrained.from 'ft/x': stage 'ft' runs after "
     r"stage 'pre'"),
    (lambda s: s[1]["cases"][0].update({"model.pretrained": {"from": "pre"}}),
     r"stages\[1\] \(ft\), case 'x': model.pretrained: expected \{from: <stage>/<trial>\}"),
    (lambda s: s[1]["cases"][0].update({"model.pretrained": {"from": "pre/a", "x": 1}}),
     r"model.pretrained: expected \{from: <stage>/<trial>\}"),
    (lambda s: s[1]["cases"][0].update({"name": "a"}),
     r"stages\[1\] \(ft\), trial 'a': the name is also a trial of stage 'pre'"),
    (lambda s: s[1].update({"name": "pre"}), r"stages\[1\]: name 'pre' is used by an earlier"),
    (lambda s: s[1].update({"name": "f/t"}), r"stages\[1\]: name: expected letters"),
    (lambda s: s[1].update({"epochs": 3}), r"stages\[1\]: unknown key\(s\) \['epochs'\]"),
    (lambda s: s[1].update({"base": {"optim": {"lr": -1}}}), r"stages\[1\] \(ft\): base: .*lr"),
    (lambda s: s[1].update({"base": {"tracking.run_dir": "x"}}),
     r"stages\[1\] \(ft\): base: 'tracking.run_dir' cannot vary"),
    (lambda s: s[1].pop("cases"), r"stages\[1\] \(ft\): grid: empty"),
    (lambda s: s[1]["cases"][0].update({"model.pretrained": {"from": "pre/a_{seed}"}}),
     r"trial 'x': model.pretrained.from 'pre/a_\{seed\}': \{...\} takes a grid axis of the stage"),
])
def test_stage_graph_errors_name_the_stage_trial_and_field(tmp_path, edit, pattern):
    raw = _two(tmp_path)
    edit(raw["stages"])
    with pytest.raises(SweepError, match=pattern):
        expand_trials(parse_sweep(raw))


def test_a_cycle_between_stages_is_a_forward_reference(tmp_path):
    raw = _two(tmp_path)
    raw["stages"][0]["cases"][0]["model.pretrained"] = {"from": "ft/x"}  # pre/a <- ft/x <- pre/a
    with pytest.raises(SweepError, match=r"trial 'a': model.pretrained.from 'ft/x': stage 'ft' "
                                         r"runs after stage 'pre' \(stages run in file order\)"):
        expand_trials(parse_sweep(raw))


@pytest.mark.parametrize(("extra", "pattern"), [
    ({"grid": {"seed": [0]}}, r"stages: \['grid'\] cannot sit beside stages"),
    ({"num_samples": 2}, r"stages: \['num_samples'\] cannot sit beside stages"),
    ({"stages": []}, r"stages: expected a non-empty list"),
])
def test_sweep_level_errors_with_stages(tmp_path, extra, pattern):
    raw = {**_two(tmp_path), **extra}
    with pytest.raises(SweepError, match=pattern):
        parse_sweep(raw)


def test_from_needs_stages(tmp_path):
    raw = {"name": "flat", "base": {"tracking": {"run_dir": str(tmp_path)}},
           "cases": [{"name": "x", "model.pretrained": {"from": "pre/a"}}]}
    with pytest.raises(SweepError, match=r"trial 'x': model.pretrained: \{from: ...\} names a "
                                         "trial of an earlier stage: it needs a sweep with stages"):
        expand_trials(parse_sweep(raw))


def test_from_fills_the_trials_grid_values(tmp_path):
    raw = _sweep(tmp_path, [
        {"name": "pre", "grid": {"seed": [0, 1]}, "cases": [{"name": "p"}]},
        {"name": "ft", "grid": {"seed": [0, 1]},
         "base": {"model": {"pretrained": {"from": "pre/p_seed-{seed}"}}},
         "cases": [{"name": "q", "model.head": "edl"}]}])
    plans = expand_trials(parse_sweep(raw))
    assert [(p.name, p.source) for p in plans if p.stage == "ft"] == [
        ("q_seed-0", "pre/p_seed-0"), ("q_seed-1", "pre/p_seed-1")]


def test_restricting_to_a_trial_keeps_the_trials_it_starts_from(tmp_path):
    spec = restrict_sweep(parse_sweep(_two(tmp_path)), trials=["y"])
    assert [p.name for p in expand_trials(spec)] == ["b", "y"]
    # --set changes the sweep's base: a stage's own base values still win, as cases and grids do
    spec = restrict_sweep(parse_sweep(_two(tmp_path)), overrides={"optim.epochs": 1,
                                                                  "optim.lr": 0.1})
    assert [(p.name, p.config.optim.epochs, p.config.optim.lr) for p in expand_trials(spec)] == [
        ("a", 1, 0.5), ("b", 1, 0.5), ("x", 1, 0.1), ("y", 1, 0.1), ("z", 1, 0.1)]


def test_dry_run_prints_the_stage_graph(tmp_path):
    spec = parse_sweep(_two(tmp_path))
    text = format_trials(expand_trials(spec), spec)
    graph = text.split("\n\n")[0].splitlines()
    assert graph[0].startswith("stages, in run order")
    assert [line.split() for line in graph[1:]] == [
        ["stage", "trial", "from"], ["pre", "a", "-"], ["pre", "b", "-"], ["ft", "x", "pre/a"],
        ["ft", "y", "pre/b"], ["ft", "z", "-"]]
    assert "model.pretrained=<from pre/b>" in text
    assert "5 trial(s) in 2 stages" in text


def _recorded(plans, sweep_dir):
    """trials.json as a run writes it: the sources' checkpoints filled in."""
    out = {}
    for p in plans:
        config = p.config.to_dict()
        if p.source:
            folder = Path(sweep_dir).absolute() / "ray" / p.source.split("/")[1]
            config["model"]["pretrained"] = str(folder / "checkpoint_epoch_0002")
        out[p.name] = config
    return out


def test_a_changed_pretrain_trial_invalidates_its_dependants(tmp_path):
    spec = parse_sweep(_two(tmp_path))
    plans = expand_trials(spec)
    configs = {p.name: p.config.to_dict() for p in plans}
    recorded = _recorded(plans, spec.sweep_dir)
    # the checkpoint path a stage resolved is not a change
    assert changed_trials(plans, recorded, configs, spec.sweep_dir) == {}
    edited = copy.deepcopy(recorded)
    edited["a"]["optim"]["lr"] = 0.25
    changed = changed_trials(plans, edited, configs, spec.sweep_dir)
    assert changed == {"a": ["optim.lr: 0.25 -> 0.5"],
                       "x": ["it starts from pre/a, which trains again"]}
    # a trial that started from another checkpoint than its source's is a change too
    edited = copy.deepcopy(recorded)
    edited["y"]["model"]["pretrained"] = "/elsewhere/checkpoint_epoch_0002"
    assert changed_trials(plans, edited, configs, spec.sweep_dir) == {
        "y": ["model.pretrained: '/elsewhere/checkpoint_epoch_0002' -> '<from pre/b>'"]}
    assert with_source(recorded["x"], "pre/a", spec.sweep_dir)["model"]["pretrained"] == \
        "<from pre/a>"


def test_the_demo_is_one_two_stage_sweep_on_the_demo_data():
    """Stage `pretrain` on the pretraining set, stage `finetune`: every method on the biased set
    and the control on the unbiased copy, each from the pretrain trial."""
    from dear_ray.demo import DEMO_DATA

    spec = load_sweep(SWEEPS / "demo.yaml")
    plans = expand_trials(spec)
    assert [s.name for s in spec.stages] == ["pretrain", "finetune"]
    pre = [p for p in plans if p.stage == "pretrain"]
    assert [(p.name, p.config.model.head, Path(p.config.data.data_root).name)
            for p in pre] == [("pretrain", "softmax", "synth_pretrain")]
    fine = [p for p in plans if p.stage == "finetune"]
    assert {p.name for p in fine} == {"softmax", "bnn", "rpl", "edl", "edl_avu", "dear", "sdn",
                                      "psl", "softmax_control"}
    assert {p.source for p in fine} == {"pretrain/pretrain"}
    roots = {Path(p.config.data.data_root).name for p in plans}
    assert roots == {"synth" + suffix for suffix in DEMO_DATA}
    assert report_trials(spec, plans) == [p.name for p in fine]
    # the pretraining ends on a checkpoint (what the fine-tuning starts from)
    assert pre[0].config.optim.epochs % pre[0].config.checkpoint.every_n_epochs == 0


def test_demo_seeds_pretrains_each_seed_and_fine_tunes_from_it():
    demo = {p.name: p for p in expand_trials(load_sweep(SWEEPS / "demo.yaml"))}
    plans = expand_trials(load_sweep(SWEEPS / "demo_seeds.yaml"))
    assert len(plans) == 3 + 27
    for plan in plans:
        seed = plan.config.seed
        assert plan.name.endswith(f"_seed-{seed}")
        if plan.source:
            assert plan.source == f"pretrain/pretrain_seed-{seed}"
        # the same settings as the demo's trial of that name, seed aside
        same = demo[plan.name.rsplit("_seed-", 1)[0]].config.override({"seed": seed})
        assert plan.config.override({"name": "demo"}) == same


def test_the_sdn_two_stage_sweep_dry_runs_without_its_data(capsys):
    assert not Path("/mnt/shared/data/lists").exists()  # the data is not on this machine
    assert main(["sweep", str(SWEEPS / "sdn_diving48.yaml"), "--dry-run"]) == 0
    out = capsys.readouterr().out
    graph = [line.split() for line in out.split("\n\n")[0].splitlines()[2:]]
    assert graph == [["pretrain", "baseline", "-"], ["pretrain", "scene_adv", "-"],
                     ["pretrain", "full", "-"],
                     ["finetune", "from_baseline", "pretrain/baseline"],
                     ["finetune", "from_scene_adv", "pretrain/scene_adv"],
                     ["finetune", "from_full", "pretrain/full"]]
    plans = {p.name: p for p in expand_trials(load_sweep(SWEEPS / "sdn_diving48.yaml"))}
    assert {p.config.data.dataset for p in plans.values() if p.stage == "pretrain"} == \
        {"minikinetics200"}
    tuned = [p for p in plans.values() if p.stage == "finetune"]
    # SDN's fine-tuning: plain cross-entropy on Diving48, every layer, from the whole model
    assert {(p.config.data.dataset, p.config.model.head, p.config.optim.lr) for p in tuned} == \
        {("diving48", "softmax", 5.0e-3)}
    assert plans["baseline"].config.model.pretrained.endswith("r3d18_a_kinetics400.pth")
