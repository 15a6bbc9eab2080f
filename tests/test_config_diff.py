"""The resume diff of two resolved configs, and the report options of `eval`."""

from __future__ import annotations

import pandas as pd
import pytest

from dear_ray.config import ExperimentConfig, load_config
from dear_ray.config.diff import config_diff, field_defaults


def _cfg(tmp_path, **overrides):
    base = {"name": "t", "data": {"data_root": str(tmp_path)},
            "tracking": {"run_dir": str(tmp_path / "runs")}}
    return load_config(base, overrides=overrides)


def test_a_field_missing_from_an_old_config_at_its_default_is_no_change(tmp_path):
    now = _cfg(tmp_path).to_dict()
    saved = _cfg(tmp_path).to_dict()
    del saved["eval"]["threshold_print"]  # saved before the field existed
    defaults = field_defaults(ExperimentConfig)
    assert config_diff(saved, now, defaults) == []
    assert config_diff(now, saved, defaults) == []  # either side may lack it
    # without the defaults it is a change, and so is a missing field set to another value
    assert config_diff(saved, now) == ["eval.threshold_print: (unset) -> 'released'"]
    changed = _cfg(tmp_path, **{"eval.threshold_print": "exact"}).to_dict()
    assert config_diff(saved, changed, defaults) == ["eval.threshold_print: (unset) -> 'exact'"]


def test_a_changed_value_is_reported_with_its_dotted_path(tmp_path):
    old = _cfg(tmp_path).to_dict()
    new = _cfg(tmp_path, **{"optim.lr": 0.5, "eval.subset_draws": "dear_stream"}).to_dict()
    assert config_diff(old, new, field_defaults(ExperimentConfig)) == [
        "eval.subset_draws: 'shared' -> 'dear_stream'", "optim.lr: 0.01 -> 0.5"]


def test_eval_report_options_default_to_the_released_settings(tmp_path):
    from dear_ray.config import PSL_MIT_KNOWN_ROWS
    from dear_ray.metrics import protocols

    assert PSL_MIT_KNOWN_ROWS == protocols.PSL_MIT_KNOWN_ROWS
    assert _cfg(tmp_path).eval.report_options() == {
        "threshold_print": "released", "subset_draws": "shared", "mit_known_rows": 3783}
    cfg = _cfg(tmp_path, **{"eval.mit_known_rows": None, "eval.threshold_print": "exact"})
    assert cfg.eval.report_options()["mit_known_rows"] is None
    with pytest.raises(Exception, match="subset_draws"):
        _cfg(tmp_path, **{"eval.subset_draws": "fresh"})


def test_the_run_report_passes_the_eval_options_to_the_evaluation(tmp_path, monkeypatch):
    from dear_ray.tracking import aggregate
    from dear_ray.train import eval_run

    seen = {}

    def fake_report_run(stores, out_dir, **kwargs):
        seen.update(kwargs)
        return pd.DataFrame()

    monkeypatch.setattr(aggregate, "report_run", fake_report_run)
    cfg = _cfg(tmp_path, **{"eval.threshold_print": "exact", "eval.subset_draws": "dear_stream",
                            "eval.mit_known_rows": 10})
    eval_run.report_run(cfg, "t", run_id="r", tracking_uri="sqlite:///x.db")
    assert (seen["threshold_print"], seen["subset_draws"], seen["mit_known_rows"]) == \
        ("exact", "dear_stream", 10)
