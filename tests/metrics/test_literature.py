"""The literature report: spec checks, published values beside ours, MLflow (tiny released files)."""

import numpy as np
import pytest
import yaml

from dear_ray.literature import run_literature_report
from dear_ray.metrics.literature_spec import is_literature_spec, load_literature_spec

KNOWN_LABELS = np.arange(20) % 4
KNOWN_PREDS = np.where(np.arange(20) < 18, KNOWN_LABELS, 0)  # rows 18, 19 wrong (labels 2, 3): 90% top-1
HMDB = np.array([35, 29, 0, 1, 2, 3, 4, 5, 6, 7])  # the first two are PSL's overlap classes


def _files(root):
    (root / "results").mkdir(parents=True)
    known = np.linspace(0.05, 0.5, 20)  # 0.05 .. 0.5
    unknown = np.array([0.01, 0.02, 0.3, 0.35, 0.4, 0.45, 0.5, 0.55, 0.6, 0.65])
    for name in ("dear", "psl"):
        np.savez(root / "results" / f"{name}.npz", ind_unctt=known, ood_unctt=unknown, ind_pred=KNOWN_PREDS,
                 ood_pred=np.zeros(10, np.int64), ind_label=KNOWN_LABELS, ood_label=HMDB)


def _spec(path, **table_changes):
    dear_table = {"title": "DEAR zoo", "source": "README", "protocol": "dear", "tolerance": 0.1,
                  "columns": {"binarized_auc": "Open-set AUC", "closed_top1": "Closed acc"},
                  "rows": [{"label": "DEAR", "model": "dear",
                            "published": {"binarized_auc": 50.0, "closed_top1": 90.0}},
                           {"label": "Gone", "model": "gone", "published": {"closed_top1": 1.0}}]}
    dear_table.update(table_changes)
    spec = {"literature": "tiny", "known_set": "ucf101",
            "models": {"dear": {"file": "results/dear.npz", "method": "dear", "unknown_set": "hmdb51",
                                "threshold": 0.42},
                       "psl": {"file": "results/psl.npz", "method": "psl", "unknown_set": "hmdb51"},
                       "gone": {"file": "results/gone.npz", "method": "rpl", "unknown_set": "hmdb51"}},
            "x-anchor": {"ignored": True},
            "tables": [dear_table,
                       {"title": "PSL table", "protocol": "psl", "decimals": 3,
                        "columns": {"auroc": "AUROC", "closed_top1": "ACC"},
                        "rows": [{"label": "PSL", "model": "psl", "published": {"closed_top1": 90.0}}]}]}
    path.write_text(yaml.safe_dump(spec))
    return path


def test_spec_checks_name_the_file_and_field(tmp_path):
    good = _spec(tmp_path / "s.yaml")
    assert is_literature_spec(good) and load_literature_spec(good).name == "tiny"
    with pytest.raises(ValueError,
                       match=r"bad\.yaml: tables\.0: Value error, columns \['accuracy'\] are not metrics"):
        load_literature_spec(_spec(tmp_path / "bad.yaml", columns={"accuracy": "Acc"}))
    with pytest.raises(ValueError, match=r"two\.yaml: tables\.0: Value error, give exactly one of tolerance"):
        load_literature_spec(_spec(tmp_path / "two.yaml", decimals=3))
    spec = yaml.safe_load(good.read_text())
    spec["tables"][0]["rows"][0]["model"] = "nope"
    (tmp_path / "m.yaml").write_text(yaml.safe_dump(spec))
    with pytest.raises(ValueError, match=r"m\.yaml: top level: Value error, table 'DEAR zoo', row 'DEAR': "
                                         r"model 'nope'"):
        load_literature_spec(tmp_path / "m.yaml")
    assert not is_literature_spec(tmp_path / "missing.yaml")


def test_report_beside_the_published_numbers_and_logged_to_mlflow(tmp_path):
    from mlflow import MlflowClient

    _files(tmp_path / "root")
    result = run_literature_report(_spec(tmp_path / "s.yaml"), root=tmp_path / "root", run_dir=tmp_path / "runs")
    frame = result.frame.set_index(["label", "metric"])
    # DEAR's protocol, threshold 0.42 on all 10 unknown videos: known 0.05 + 0.45 k / 19 > 0.42 for
    # k = 16..19 (4 of 20); unknown > 0.42: 0.45 .. 0.65 (5 of 10): AUC = (1 + 0.5 - 0.2) / 2 = 0.65
    assert frame.loc[("DEAR", "binarized_auc"), "ours"] == pytest.approx(65.0)
    assert frame.loc[("DEAR", "binarized_auc"), "diff"] == pytest.approx(15.0)
    assert not frame.loc[("DEAR", "binarized_auc"), "reproduced"]
    assert frame.loc[("DEAR", "closed_top1"), "ours"] == pytest.approx(90.0)
    assert frame.loc[("DEAR", "closed_top1"), "reproduced"]
    assert frame.loc[("Gone", "closed_top1"), "note"].startswith("file absent: ")
    # PSL's protocol drops the two overlap videos (0.01, 0.02): AUROC of 20 known vs the other 8
    known, unknown = np.linspace(0.05, 0.5, 20), np.array([0.3, 0.35, 0.4, 0.45, 0.5, 0.55, 0.6, 0.65])
    pairs = (unknown[:, None] > known[None]).mean() + 0.5 * (unknown[:, None] == known[None]).mean()
    assert frame.loc[("PSL", "auroc"), "ours"] == pytest.approx(100 * pairs)
    text = result.text
    assert "DEAR zoo [DEAR's protocol: every unknown class" in text and "PSL table [PSL's protocol: HMDB-51" in text
    assert "reproduced within 0.1 (percent): 1 of 2 published numbers; NOT reproduced: DEAR Open-set AUC" in text
    assert "Gone: file absent: " in text and "Cross-protocol" in text
    assert (result.out_dir / "literature.md").is_file() and (result.out_dir / "cross_protocol.csv").is_file()
    cross = result.cross.set_index("model")
    assert cross.loc["dear", "auroc_psl"] == pytest.approx(100 * pairs)
    assert np.isnan(cross.loc["psl", "binarized_auc_dear"])  # no threshold under DEAR's protocol
    # MLflow: a parent run with the counts and the tables, a child run per model with a file
    client = MlflowClient(f"sqlite:///{tmp_path / 'runs' / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("literature_tiny").experiment_id])
    parent = next(r for r in runs if r.info.run_name == "tiny")
    assert parent.data.metrics["published_numbers"] == 3 and parent.data.metrics["reproduced_numbers"] == 2
    assert {a.path for a in client.list_artifacts(parent.info.run_id, "report")} >= {"report/literature.md"}
    child = next(r for r in runs if r.info.run_name == "dear")
    assert child.data.tags["mlflow.parentRunId"] == parent.info.run_id
    assert child.data.metrics["hmdb51/binarized_auc"] == pytest.approx(0.65)
    assert "psl/hmdb51/auroc" in child.data.metrics
    assert {r.info.run_name for r in runs} == {"tiny", "dear", "psl"}


def test_no_usable_file_is_an_error(tmp_path):
    (tmp_path / "root").mkdir()
    with pytest.raises(ValueError, match=r"none of its 3 files is usable under .*root \(first: file absent"):
        run_literature_report(_spec(tmp_path / "s.yaml"), root=tmp_path / "root", mlflow=False,
                              out_dir=tmp_path / "out")
