"""Tests of dear_ray.tracking.zoo: DEAR's model-zoo table beside SPEC section 4's numbers."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from dear_ray.tracking.zoo import (
    DEAR_CLOSED_TOP1,
    format_zoo_markdown,
    published,
    write_zoo_report,
    zoo_columns,
    zoo_table,
)


def _row(trial, method, backbone, unknown, maf1, auc, top1):
    return {"trial": trial, "method": method, "backbone": backbone, "unknown_set": unknown,
            "open_maf1": maf1, "binarized_auc": auc, "closed_top1": top1, "auroc": 0.5}


def _results() -> pd.DataFrame:
    rows = [
        # a softmax trial gives softmax, mc_dropout (and openmax) rows; one row per unknown set
        _row("tsm_softmax", "softmax", "tsm_r50", "hmdb51", 0.7800, 0.7700, 0.9400),
        _row("tsm_softmax", "softmax", "tsm_r50", "mit_v2", 0.7200, 0.8300, 0.9400),
        _row("tsm_softmax", "mc_dropout", "tsm_r50", "hmdb51", 0.7000, 0.7400, 0.9300),
        _row("tsm_softmax", "mc_dropout", "tsm_r50", "mit_v2", 0.6600, 0.7800, 0.9300),
        _row("i3d_dear", "dear", "i3d_r50", "hmdb51", 0.7724, 0.7700, 0.9400),
        _row("i3d_dear", "dear", "i3d_r50", "mit_v2", 0.7000, 0.8154, 0.9400),
        # not in the paper: a tiny backbone, an edl head, the demo's unknown set
        _row("demo_edl", "edl", "i3d_r50", "hmdb51", 0.5, 0.5, 0.5),
        _row("tiny", "dear", "i3d_tiny", "unknown", 0.5, 0.5, 0.5),
    ]
    return pd.DataFrame(rows)


def test_published_numbers_are_spec_section_4():
    assert published("I3D", "dear", "hmdb51") == (77.24, 77.08)
    assert published("SlowFast", "dear", "mit_v2") == (77.28, 86.99)
    assert published("TSM", "openmax", "mit_v2") == (71.81, 83.05)
    assert published("TPN", "mc_dropout", "hmdb51") == (68.45, 74.13)
    assert published("TPN", "rpl", "mit_v2") == (66.21, 78.21)
    assert published("I3D", "bnn", "mit_v2") == (68.65, 79.50)
    assert published("I3D", "edl", "hmdb51") is None and published("X", "dear", "hmdb51") is None
    assert DEAR_CLOSED_TOP1 == {"I3D": 93.89, "TSM": 94.48, "TPN": 96.30, "SlowFast": 96.48}


def test_zoo_table_puts_ours_beside_the_paper_with_the_difference():
    zoo = zoo_table(_results())
    # paper order: I3D before TSM, then OpenMax, MC Dropout, BNN, SoftMax, RPL, DEAR
    assert list(zoo["model"]) == ["I3D + DEAR", "TSM + MC Dropout", "TSM + SoftMax"]
    assert list(zoo.columns[4:]) == zoo_columns()
    dear = zoo.iloc[0]
    assert dear["open_maf1_hmdb51"] == pytest.approx(77.24)
    assert dear["paper_open_maf1_hmdb51"] == 77.24 and dear["diff_open_maf1_hmdb51"] == pytest.approx(0)
    assert dear["binarized_auc_mit_v2"] == pytest.approx(81.54)
    assert dear["diff_open_maf1_mit_v2"] == pytest.approx(70.00 - 69.98)
    assert dear["diff_binarized_auc_hmdb51"] == pytest.approx(77.00 - 77.08)
    assert dear["paper_closed_top1"] == 93.89 and dear["diff_closed_top1"] == pytest.approx(0.11)
    softmax = zoo.iloc[2]
    assert softmax["trial"] == "tsm_softmax"
    assert softmax["diff_open_maf1_hmdb51"] == pytest.approx(78.00 - 78.27)
    assert softmax["diff_binarized_auc_mit_v2"] == pytest.approx(83.00 - 82.38)
    # the paper reports closed-set accuracy for DEAR only
    assert softmax["closed_top1"] == pytest.approx(94.0) and math.isnan(softmax["paper_closed_top1"])
    assert zoo.iloc[1]["diff_open_maf1_mit_v2"] == pytest.approx(66.00 - 65.32)


def test_zoo_report_files_and_markdown(tmp_path):
    assert write_zoo_report(_results()[_results()["trial"] == "tiny"], tmp_path) is None
    assert not (tmp_path / "zoo.md").exists()
    assert zoo_table(pd.DataFrame()).empty
    path = write_zoo_report(_results(), tmp_path)
    text = path.read_text()
    assert text.splitlines()[0] == ("| Model | trial | Open maF1 HMDB (%) | Open maF1 MiT (%) | "
                                    "Open-set AUC HMDB (%) | Open-set AUC MiT (%) | "
                                    "Closed-set acc (%) |")
    assert "| I3D + DEAR | i3d_dear | 77.24 / 77.24 (+0.00) | 70.00 / 69.98 (+0.02) | " \
           "77.00 / 77.08 (-0.08) | 81.54 / 81.54 (+0.00) | 94.00 / 93.89 (+0.11) |" in text
    assert "| TSM + SoftMax | tsm_softmax | 78.00 / 78.27 (-0.27)" in text
    assert "94.00 / - |" in text  # SoftMax closed-set accuracy: no published value
    assert pd.read_csv(tmp_path / "zoo.csv").shape == (3, 4 + len(zoo_columns()))
    assert format_zoo_markdown(zoo_table(_results())) == text
