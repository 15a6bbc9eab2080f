"""`_data_roots`: each trial's data folder from the sweep's trials.json, for stores that predate
the `data_root` in their metadata (the baseline pairing of `evaluate_stores(data_of=...)`)."""

from __future__ import annotations

import json

from dear_ray.tracking.aggregate import _data_roots


def test_trial_data_folders_come_from_the_recorded_trial_configs(tmp_path):
    (tmp_path / "trials.json").write_text(json.dumps({
        "softmax": {"data": {"data_root": "/d/synth"}},
        "softmax_control": {"data": {"data_root": "/d/synth_unbiased"}},
        "no_data": {"model": {}}, "broken": "not a config"}))
    assert _data_roots(tmp_path) == {"softmax": "/d/synth", "softmax_control": "/d/synth_unbiased",
                                     "no_data": ""}
    assert _data_roots(tmp_path / "elsewhere") == {}
    (tmp_path / "trials.json").write_text("{not json")
    assert _data_roots(tmp_path) == {}
