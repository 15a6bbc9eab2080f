"""`dear-ray scores import` and `dear-ray report SPEC --root DIR` (a literature spec)."""

from pathlib import Path

import numpy as np
import pytest
import yaml

from dear_ray.cli import main

REPO = Path(__file__).resolve().parents[1]


def _npz(path, **override):
    arrays = {"ind_unctt": np.array([0.1, 0.5, 0.2, 0.3]), "ood_unctt": np.array([0.6, 0.05, 0.9]),
              "ind_pred": np.array([0, 1, 2, 0]), "ood_pred": np.array([1, 1, 2]),
              "ind_label": np.array([0, 1, 1, 0]), "ood_label": np.array([3, 40, 3])}
    arrays.update(override)
    np.savez(path, **{k: v for k, v in arrays.items() if v is not None})
    return str(path)


def test_scores_import_writes_stores_and_evaluate_reads_them(tmp_path, capsys):
    args = ["scores", "import", _npz(tmp_path / "TSM_DEAR_HMDB.npz"), "--method", "dear", "--unknown-set",
            "hmdb51", "--threshold", "0.25", "--out", str(tmp_path / "stores"), "--run", "dear_hmdb"]
    assert main(args) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].endswith("dear_hmdb/test.parquet: test (ucf101), 4 videos, score 'uncertainty', method dear, "
                           "threshold 0.25")
    assert "unknown_hmdb51.parquet: unknown (hmdb51), 3 videos" in out[1]
    with pytest.warns(UserWarning, match=r"left out \(the stores hold scores and predictions\)"):
        assert main(["evaluate", str(tmp_path / "stores"), "--out", str(tmp_path / "ev"), "--resamples", "0",
                     "--columns", "method,unknown_set,binarized_auc,threshold"]) == 0
    printed = capsys.readouterr()
    # rejected: known 0.5, 0.3 (2 of 4), unknown 0.6, 0.9 (2 of 3): (1 + 2/3 - 1/2) / 2 = 58.3%
    assert "dear    hmdb51" in printed.out and "58.3" in printed.out and "0.25" in printed.out
    assert (tmp_path / "ev" / "results.csv").is_file()


def test_scores_import_bad_file_is_one_line_naming_file_and_key(tmp_path, capsys):
    bad = _npz(tmp_path / "bad.npz", ood_label=np.array([3, 51, 3]))
    assert main(["scores", "import", bad, "--method", "dear", "--unknown-set", "hmdb51",
                 "--out", str(tmp_path / "stores")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "bad.npz: key 'ood_label' has value 51 at row 1, outside [0, 51)" in err
    assert not (tmp_path / "stores").exists()
    missing = _npz(tmp_path / "missing.npz", ind_pred=None)
    assert main(["scores", "import", missing, "--method", "m", "--unknown-set", "x", "--out", str(tmp_path)]) == 2
    assert "missing.npz: no key 'ind_pred'" in capsys.readouterr().err


def test_report_of_a_literature_spec(tmp_path, capsys):
    root = tmp_path / "root"
    root.mkdir()
    _npz(root / "dear.npz")
    spec = {"literature": "cli", "models": {"dear": {"file": "dear.npz", "method": "dear", "unknown_set": "hmdb51",
                                                     "threshold": 0.25}},
            "tables": [{"title": "Zoo", "protocol": "dear", "tolerance": 0.1,
                        "columns": {"binarized_auc": "AUC", "closed_top1": "Acc"},
                        "rows": [{"label": "DEAR", "model": "dear",
                                  "published": {"binarized_auc": 58.33, "closed_top1": 75.0}}]}]}
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(spec))
    args = ["report", str(tmp_path / "spec.yaml"), "--root", str(root), "--run-dir", str(tmp_path / "runs"),
            "--no-mlflow"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "Zoo [DEAR's protocol:" in out and "reproduced within 0.1 (percent): 2 of 2" in out
    assert f"tables: {tmp_path / 'runs' / 'literature' / 'cli'}" in out
    spec["tables"][0]["rows"][0]["published"]["closed_top1"] = 80.0  # not reproduced: exit status 1
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(spec))
    assert main(args) == 1
    assert "NOT reproduced: DEAR Acc" in capsys.readouterr().out
    assert main(["report", str(tmp_path / "spec.yaml")]) == 2
    assert "is a literature spec: give --root" in capsys.readouterr().err
    assert main(["report", str(REPO / "jobs/sweeps/demo.yaml"), "--root", str(root)]) == 2
    assert "--root goes with a literature spec" in capsys.readouterr().err


def test_the_shipped_tsm_spec_is_valid():
    from dear_ray.metrics.literature_spec import load_literature_spec

    spec = load_literature_spec(REPO / "jobs/literature/tsm_ucf101.yaml")
    assert len(spec.tables) == 10 and {t.protocol for t in spec.tables} == {"dear", "psl"}
    dear_row = spec.tables[0].rows[2]
    assert dear_row.published == {"open_maf1": 84.69, "binarized_auc": 78.65, "closed_top1": 94.48}
    assert spec.models[dear_row.model].threshold == 0.004549 and dear_row.stream_position == 2
