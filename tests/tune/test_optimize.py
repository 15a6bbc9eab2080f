"""Tests of a sweep's `optimize:` section (dear_ray.tune.optimize): its validation, what it needs
of the rest of the sweep, the objective read from a trial's results, and the Pareto report's files
(dear_ray.tracking.pareto_report)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from dear_ray.tracking.pareto_report import (
    read_trial_objectives,
    report_pareto,
    write_trial_objectives,
)
from dear_ray.tune.optimize import _objective_value, tune_key
from dear_ray.tune.sweep import SweepError, expand_trials, format_trials, parse_sweep

REPO = Path(__file__).resolve().parents[2]


def _raw(tmp_path, **changes) -> dict:
    raw = {"name": "opt", "base": {"tracking": {"run_dir": str(tmp_path / "runs")}},
           "grid": {"model.head": ["edl"]},
           "search": {"optim.lr": {"type": "loguniform", "low": 1e-4, "high": 1e-2},
                      "model.dropout": {"type": "uniform", "low": 0.0, "high": 0.5}},
           "num_samples": 4,
           "optimize": {"algorithm": "optuna", "objectives": {"closed_top1": "max", "auroc": "max"}}}
    raw.update(changes)
    return raw


def _expand(raw):
    spec = parse_sweep(raw)
    return spec, expand_trials(spec)


def test_a_valid_section_is_parsed_and_listed_by_the_dry_run(tmp_path):
    spec, plans = _expand(_raw(tmp_path))
    assert spec.optimize.objectives == {"closed_top1": "max", "auroc": "max"}
    assert spec.optimize.seed == 0
    assert spec.optimize.tune_keys() == ["objective/closed_top1", "objective/auroc"]
    listing = format_trials(plans, spec)
    assert "optimize: optuna (seed 0) towards max closed_top1, max auroc" in listing
    assert "search optuna" in listing


@pytest.mark.parametrize("optimize, pattern", [
    ("optuna", r"optimize: expected a mapping"),
    ({"algorithm": "hyperopt", "objectives": {"closed_top1": "max", "auroc": "max"}},
     r"optimize.algorithm: 'hyperopt'; supported: optuna"),
    ({"objectives": {"auroc": "max"}}, r"at least two metrics.*single-objective search"),
    ({"objectives": {"closed_top1": "max", "auroc": "up"}},
     r"optimize.objectives.auroc: 'up'; expected max or min"),
    ({"objectives": {"closed_top1": "max", "aucroc": "max"}},
     r"optimize.objectives.aucroc: 'aucroc' is not a metric of the results table"),
    ({"objectives": {"closed_top1": "max", "hmdb51/closed_top5": "max"}},
     r"'closed_top5' is not about an unknown set; write it without 'hmdb51/'"),
    ({"objectives": {"closed_top1": "max", "auroc": "max"}, "seed": -1},
     r"optimize.seed: expected an integer >= 0"),
    ({"objectives": {"closed_top1": "max", "auroc": "max"}, "sampler": "tpe"},
     r"optimize: unknown key\(s\) \['sampler'\]"),
])
def test_section_errors_name_the_key_and_value(tmp_path, optimize, pattern):
    with pytest.raises(SweepError, match=pattern):
        parse_sweep(_raw(tmp_path, optimize=optimize))


def test_what_optimize_needs_of_the_rest_of_the_sweep(tmp_path):
    with pytest.raises(SweepError, match=r"Optuna samples one trial configuration; grid and cases "
                                         r"give 2"):
        _expand(_raw(tmp_path, grid={"model.head": ["edl", "dear"]}))
    with pytest.raises(SweepError, match=r"optimize and scheduler"):
        _expand(_raw(tmp_path, scheduler={"type": "asha", "metric": "val_top1", "mode": "max"}))
    with pytest.raises(SweepError, match=r"needs a search: space"):
        _expand(_raw(tmp_path, search=None))
    # contrast accuracy needs the SCUBA and SCUFO splits, which this data set does not list
    raw = _raw(tmp_path, optimize={"objectives": {"closed_top1": "max", "contrast_acc": "max"}})
    raw["base"]["data"] = {"dataset": "ucf101"}
    _expand({**raw, "optimize": {"objectives": {"closed_top1": "max", "auroc": "min"}}})
    with pytest.raises(SweepError, match=r"optimize.objectives.contrast_acc: needs the test_scuba, "
                                         r"test_scufo split\(s\), which trial 'head-edl' does not score"):
        _expand(raw)


def test_a_missing_optuna_is_named_with_the_install_command(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "optuna", None)  # import optuna -> ImportError
    with pytest.raises(SweepError, match=r"needs the optuna package.*dear-ray\[optuna\]"):
        _expand(_raw(tmp_path))


def test_the_shipped_optuna_sweep_validates():
    from dear_ray.tune.sweep import load_sweep

    spec = load_sweep(REPO / "jobs" / "sweeps" / "dear_tradeoff_optuna.yaml")
    assert list(spec.optimize.objectives) == ["closed_top1", "auroc", "contrast_acc"]
    assert len(expand_trials(spec)) == 1 and spec.num_samples == 12


def _own_rows() -> pd.DataFrame:
    return pd.DataFrame({"unknown_set": ["hmdb51", "mit", "hmdb51-minus-k400"],
                         "closed_top1": [0.9, 0.9, 0.9], "auroc": [0.8, 0.7, 0.85]})


def test_an_objective_reads_the_named_or_only_unknown_set():
    rows = _own_rows()
    assert _objective_value(rows, "closed_top1", "t") == 0.9
    assert _objective_value(rows, "mit/auroc", "t") == 0.7
    with pytest.raises(ValueError, match=r"2 unknown sets \(hmdb51, mit\); name one, e.g. hmdb51/auroc"):
        _objective_value(rows, "auroc", "t")
    with pytest.raises(ValueError, match=r"no unknown set 'ucf'; its unknown sets: hmdb51, mit"):
        _objective_value(rows, "ucf/auroc", "t")
    # an exclusion's set is not a choice: one unknown set left
    assert _objective_value(rows.iloc[[0, 2]], "auroc", "t") == 0.8
    with pytest.raises(ValueError, match=r"objective contrast_acc has no value"):
        _objective_value(rows.assign(contrast_acc=np.nan), "contrast_acc", "t")


def test_tune_keys_keep_a_named_set_in_one_result_key():
    assert tune_key("hmdb51/auroc") == "objective/hmdb51.auroc"


def test_the_pareto_report_marks_the_non_dominated_trials(tmp_path):
    values = {"a": (0.9, 0.5), "b": (0.8, 0.7), "c": (0.7, 0.6), "d": (0.9, 0.5), "e": (0.6, 0.9)}
    for trial, (top1, auroc) in values.items():
        write_trial_objectives(tmp_path, trial, {"closed_top1": top1, "auroc": auroc},
                               {"optim.lr": 0.01, "model.dropout": np.float64(0.2)})
    (tmp_path / "objectives" / "broken.json").write_text("{not json")
    front = report_pareto(tmp_path, {"closed_top1": "max", "auroc": "max"})
    # c is beaten by b on both; a and d tie (neither dominates the other)
    assert set(front.loc[front["on_front"], "trial"]) == {"a", "b", "d", "e"}
    out = tmp_path / "report" / "pareto"
    assert (out / "pareto.png").stat().st_size > 0
    assert pd.read_csv(out / "pareto.csv")["on_front"].sum() == 4
    md = (out / "pareto.md").read_text()
    assert md.startswith("Pareto front: 4 of 5 trial(s)")
    assert "| trial | closed_top1 (max) | auroc (max) | optim.lr | model.dropout |" in md
    assert "| c |" not in md
    # the record holds plain JSON numbers; a subset of trials can be asked for
    record = json.loads((tmp_path / "objectives" / "a.json").read_text())
    assert record["params"] == {"optim.lr": 0.01, "model.dropout": 0.2}
    assert list(read_trial_objectives(tmp_path, ["auroc"], trials={"a", "e"})["trial"]) == ["a", "e"]
