"""notebooks/compare_methods.ipynb runs top to bottom against a small real sweep (Ray Tune + Ray
Train + MLflow, two trials) and shows what MLflow holds. Slow: the sweep starts a local Ray."""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
import pytest
from mlflow import MlflowClient
from nbclient import NotebookClient

from dear_ray.tune.sweep import parse_sweep, run_sweep


NOTEBOOK = Path(__file__).resolve().parents[2] / "notebooks" / "compare_methods.ipynb"
COLUMNS = {"closed_top1": "top1", "shifted_top1": "top1 shifted", "static_bias_gap": "bias gap",
           "auroc": "AUROC", "open_maf1": "open maF1", "open_auc": "OpenAUC",
           "fpr_at_95_tpr": "FPR95", "ece": "ECE"}


@pytest.fixture(scope="module")
def sweep(tmp_path_factory, sweep_synth):
    root = tmp_path_factory.mktemp("nb")
    spec = parse_sweep({
        "name": "nbsweep",
        "base": {
            "data": {"data_root": str(sweep_synth), "clip_len": 8, "crop_size": 32,
                     "scale_short": 32, "batch_size": 6},
            "model": {"backbone": "i3d_tiny"},
            "optim": {"epochs": 2, "lr": 0.01},
            "eval": {"stochastic_passes": 3, "every_n_epochs": 0},
            "resources": {"num_workers": 1, "cpus_per_worker": 1},
            "tracking": {"run_dir": str(root / "runs"), "uri": f"sqlite:///{root}/runs/mlflow.db"},
        },
        "cases": [{"name": "softmax", "model.head": "softmax"},
                  {"name": "dear", "model.head": "dear",
                   "model.head_options": {"temporal_kernel": 1}}],
        "max_concurrent_trials": 1,
    })
    result = run_sweep(spec)
    assert result.failed == {}
    return result


def _execute(tmp_path: Path, env: dict[str, str], monkeypatch) -> nbformat.NotebookNode:
    for key, value in env.items():
        monkeypatch.setenv(key, value)  # the kernel inherits this process's environment
    nb = nbformat.read(NOTEBOOK, as_version=4)
    # one extra cell hands the notebook's table back to the test
    nb.cells.append(nbformat.v4.new_code_cell('print(table.to_json(orient="records"))'))
    NotebookClient(nb, timeout=300, kernel_name="python3",
                   resources={"metadata": {"path": str(tmp_path)}}).execute()
    return nb


def test_notebook_is_committed_clean():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(nb)
    assert nb.metadata.kernelspec.name == "python3"
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code and all(not c.outputs and c.execution_count is None for c in code)


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_notebook_shows_the_sweep_from_mlflow(sweep, tmp_path, monkeypatch):
    figures = tmp_path / "figures"
    nb = _execute(tmp_path, {"DEAR_RAY_TRACKING_URI": sweep.tracking_uri,
                             "DEAR_RAY_SWEEP": "nbsweep", "DEAR_RAY_FIGURES": str(figures)},
                  monkeypatch)
    rows = json.loads(nb.cells[-1].outputs[0]["text"])

    # every run the aggregator gave a method appears once, with MLflow's numbers (in percent)
    client = MlflowClient(sweep.tracking_uri)
    runs = [r for r in client.search_runs([sweep.experiment_id]) if "method" in r.data.tags]
    assert sorted((r["trial"], r["method"]) for r in rows) == sorted(
        (r.data.tags["trial"], r.data.tags["method"]) for r in runs)
    assert {"softmax", "mc_dropout", "dear"} <= {r["method"] for r in rows}
    for run in runs:
        row = next(r for r in rows if (r["trial"], r["method"]) ==
                   (run.data.tags["trial"], run.data.tags["method"]))
        for key, name in COLUMNS.items():
            assert row[name] == pytest.approx(100 * run.data.metrics[key]), (row["method"], key)

    pictures = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs
                if "image/png" in o.get("data", {})]
    assert len(pictures) == 3  # openness curves, histograms, static-bias gap
    for name in ("openness_curves", "uncertainty_histograms", "static_bias_gap"):
        assert (figures / f"{name}.png").stat().st_size > 10_000, name


@pytest.mark.slow
def test_notebook_names_a_missing_sweep(sweep, tmp_path, monkeypatch):
    from nbclient.exceptions import CellExecutionError

    with pytest.raises(CellExecutionError, match="no MLflow experiment 'nope'"):
        _execute(tmp_path, {"DEAR_RAY_TRACKING_URI": sweep.tracking_uri,
                            "DEAR_RAY_SWEEP": "nope"}, monkeypatch)
