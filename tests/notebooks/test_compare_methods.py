"""notebooks/compare_methods.ipynb runs top to bottom against a small real sweep (Ray Tune + Ray
Train + MLflow, two trials) and shows what MLflow holds. The sweep starts a local Ray: slow."""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
import psutil
import pytest
import ray
from mlflow import MlflowClient
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

from dear_ray.tracking.aggregate import metric_name
from dear_ray.tracking.mlflow_runs import ROLE_TAG
from dear_ray.tune import run_sweep
from dear_ray.tune.sweep import parse_sweep

REPO = Path(__file__).resolve().parents[2]
NOTEBOOK = REPO / "notebooks" / "compare_methods.ipynb"
ENV_VARS = ("DEAR_RAY_TRACKING_URI", "DEAR_RAY_SWEEP", "DEAR_RAY_FIGURES", "MLFLOW_TRACKING_URI")
COLUMNS = {"closed_top1": "top1", "shifted_top1": "top1 shifted", "static_bias_gap": "bias gap",
           "auroc": "AUROC", "open_maf1": "open maF1", "open_auc": "OpenAUC",
           "fpr_at_95_tpr_first": "FPR95", "ece": "ECE"}
FIGURES = ("openness_curves", "uncertainty_histograms", "static_bias_gap")
# the notebook's last figure (the static-bias bars) and the curves it drew, handed to the test
FIGURE_FACTS = """import json
legend = ax.get_legend().get_bbox_to_anchor().transformed(ax.transAxes.inverted())
print(json.dumps({"curve_methods": sorted(curves["method"].unique()), "bars": len(ax.patches),
                  "legend_x0": legend.x0}))"""


@pytest.fixture(scope="module")
def sweep(tmp_path_factory, sweep_synth):
    """A finished 2-trial sweep (softmax, dear) with test, test_shifted and unknown splits, plus an
    OLDER parent run of the same sweep name holding a stale trial, which the notebook must skip."""
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
    # Processes of earlier tests (multiprocessing's forkserver and resource tracker live as long as
    # this process) are not the sweep's.
    before = {p.pid for p in psutil.Process().children(recursive=True)}
    result = run_sweep(spec)
    assert result.failed == {}
    # run_sweep stops the Ray it started: nothing of it may outlive the sweep
    assert not ray.is_initialized()
    started = [p for p in psutil.Process().children(recursive=True) if p.pid not in before]
    _, alive = psutil.wait_procs(started, timeout=20)
    assert not alive, [(p.pid, p.name(), p.cmdline()[:3]) for p in alive]

    client = MlflowClient(result.tracking_uri)
    start = client.get_run(result.parent_run_id).info.start_time - 86_400_000  # a day earlier
    old = client.create_run(result.experiment_id, start_time=start, run_name="nbsweep",
                            tags={ROLE_TAG: "sweep", "sweep": "nbsweep"}).info.run_id
    stale = client.create_run(result.experiment_id, start_time=start, run_name="stale",
                              tags={ROLE_TAG: "trial", MLFLOW_PARENT_RUN_ID: old, "trial": "stale",
                                    "method": "stale"}).info.run_id
    client.log_metric(stale, "closed_top1", 0.5)
    for run_id in (stale, old):
        client.set_terminated(run_id)
    return result


def _execute(nb: nbformat.NotebookNode, cwd: Path, env: dict[str, str],
             monkeypatch) -> nbformat.NotebookNode:
    """Run `nb` in a python3 kernel started in `cwd` with exactly `env` among ENV_VARS."""
    for key in ENV_VARS:
        monkeypatch.delenv(key, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)  # the kernel inherits this process's environment
    NotebookClient(nb, timeout=180, kernel_name="python3",
                   resources={"metadata": {"path": str(cwd)}}).execute()
    return nb


def _notebook(*extra_cells: str) -> nbformat.NotebookNode:
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nb.cells.extend(nbformat.v4.new_code_cell(src) for src in extra_cells)
    return nb


def _printed(cell: nbformat.NotebookNode) -> str:
    return "".join(o["text"] for o in cell.outputs if o.get("name") == "stdout")


def test_notebook_is_committed_clean():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(nb)
    assert nb.nbformat == 4 and nb.metadata.kernelspec.name == "python3"
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code and all(not c.outputs and c.execution_count is None for c in code)
    assert sum(c.cell_type == "markdown" for c in nb.cells) >= 5  # intro + one per section


def test_default_tracking_uri_is_the_repos_whatever_the_cwd(tmp_path, monkeypatch):
    """No variable set: `runs/mlflow.db` of the repository, even from a folder outside it;
    MLFLOW_TRACKING_URI, then DEAR_RAY_TRACKING_URI, win over it."""
    setup = next(c for c in nbformat.read(NOTEBOOK, as_version=4).cells
                 if c.cell_type == "code").source
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(src) for src in (
        setup, "print(TRACKING_URI, SWEEP, FIGURES)",
        "import os\nos.environ['MLFLOW_TRACKING_URI'] = 'sqlite:///m.db'",
        setup, "print(TRACKING_URI)",
        "os.environ['DEAR_RAY_TRACKING_URI'] = 'http://host:5000'",
        setup, "print(TRACKING_URI)")])
    _execute(nb, tmp_path, {}, monkeypatch)
    assert _printed(nb.cells[1]) == f"sqlite:///{REPO / 'runs' / 'mlflow.db'} demo None\n"
    assert _printed(nb.cells[4]) == "sqlite:///m.db\n"
    assert _printed(nb.cells[7]) == "http://host:5000\n"


def test_notebook_names_a_missing_database(tmp_path, monkeypatch):
    missing = tmp_path / "nothing" / "mlflow.db"
    with pytest.raises(CellExecutionError, match=f"no MLflow database {missing}"):
        _execute(_notebook(), tmp_path, {"MLFLOW_TRACKING_URI": f"sqlite:///{missing}"},
                 monkeypatch)
    assert not missing.exists()


@pytest.mark.slow
def test_notebook_shows_the_newest_sweep_from_mlflow(sweep, tmp_path, monkeypatch):
    figures = tmp_path / "figures"
    # one extra cell hands the notebook's table back to the test
    nb = _execute(_notebook('print(table.to_json(orient="records"))', FIGURE_FACTS), tmp_path,
                  {"DEAR_RAY_TRACKING_URI": sweep.tracking_uri, "DEAR_RAY_SWEEP": "nbsweep",
                   "DEAR_RAY_FIGURES": str(figures)}, monkeypatch)
    rows = json.loads(_printed(nb.cells[-2]))
    facts = json.loads(_printed(nb.cells[-1]))
    # the figures draw the trained and post-hoc methods, not the detector rows (each repeating
    # its model's top-1), with the legend beside the plot, not over it
    assert facts["curve_methods"] == sorted({r["method"] for r in rows if "+" not in r["method"]})
    assert facts["bars"] == 2 * len(facts["curve_methods"]) and facts["legend_x0"] >= 1.0

    # one row per method of the newest parent run (trials and their post-hoc runs), none of the
    # stale parent's, each with MLflow's numbers (in percent)
    client = MlflowClient(sweep.tracking_uri)
    trials = client.search_runs([sweep.experiment_id],
                                f"tags.mlflow.parentRunId = '{sweep.parent_run_id}'")
    posthoc = [r for t in trials for r in client.search_runs(
        [sweep.experiment_id], f"tags.mlflow.parentRunId = '{t.info.run_id}'")]
    runs = {(r.data.tags["trial"], r.data.tags["method"]): r for r in [*trials, *posthoc]}
    # one row per method and unknown set (the sweep's one set, `unknown`)
    assert sorted((r["trial"], r["method"]) for r in rows) == sorted(runs)
    assert {r["unknown set"] for r in rows} == {"unknown"}
    # OpenMax needs 2 correctly classified training videos a class, which a 2-epoch model on 6
    # videos a class does not always have: then the aggregator warns and writes no openmax run
    # (the softmax trial's post-hoc detector rows, softmax+<detector>, and the dear trial's
    # Dirichlet-score rows, dear+<score>, come on top)
    methods = sorted(r["method"] for r in rows if "+" not in r["method"])
    assert methods in (["dear", "mc_dropout", "openmax", "softmax"], ["dear", "mc_dropout", "softmax"])
    assert all(r["method"].startswith(("softmax+", "dear+")) for r in rows if "+" in r["method"])
    for row in rows:
        metrics = runs[(row["trial"], row["method"])].data.metrics
        for key, name in COLUMNS.items():
            assert row[name] == pytest.approx(100 * metrics[metric_name(key, "unknown")]), (row["method"], key)
        assert row["bias gap"] == pytest.approx(row["top1"] - row["top1 shifted"])
        low, high = metrics["unknown/auroc_ci_low"], metrics["unknown/auroc_ci_high"]
        assert row["AUROC 95% CI"] == f"[{100 * low:.1f}, {100 * high:.1f}]"

    pictures = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs
                if "image/png" in o.get("data", {})]
    assert len(pictures) == len(FIGURES)
    for name in FIGURES:
        assert (figures / f"{name}.png").stat().st_size > 10_000, name


@pytest.mark.slow
def test_notebook_names_a_missing_sweep(sweep, tmp_path, monkeypatch):
    with pytest.raises(CellExecutionError, match="no MLflow experiment 'nope'"):
        _execute(_notebook(), tmp_path, {"DEAR_RAY_TRACKING_URI": sweep.tracking_uri,
                                         "DEAR_RAY_SWEEP": "nope"}, monkeypatch)
