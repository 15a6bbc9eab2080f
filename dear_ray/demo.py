"""The main job behind `make demo`: synthetic data sets -> demo sweep -> results table -> MLflow UI.

The demo trains every method on the biased data set (`data/synth`, scene = class's scene for 95% of
train/val/test videos) and, as a control arm, the softmax baseline with the same backbone and budget
on an unbiased copy (`data/synth_unbiased`, scene drawn independently of the class); it also
generates a pretraining set of other motions (`data/synth_pretrain`, `DEMO_DATA`). The control
shows that the motion is learnable by the demo's model; the biased rows show how far each method
leans on the scene (test vs test_shifted) and how well it detects unknown motions.

What is reused when `make demo` runs again:
- a data set whose `manifest.json` records exactly the parameters the demo asks for (the generator's
  defaults plus `DEMO_DATA`); a missing, interrupted or differently generated one is (re)generated;
- the sweep's finished trials (`run_sweep(resume=True)`): they are not trained again. When a data set
  was (re)generated, earlier results under `runs/<sweep name>` belong to the old data: that folder is
  moved aside to `runs/<sweep name>.old-<UTC time>` and every trial trains again.
To start over by hand: delete `runs/<sweep name>` (and `data/synth*` to regenerate the data too).
"""

from __future__ import annotations

import json
import shutil
import time
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

# The columns the demo prints, in order; the full table (every metric) is in MLflow and on disk.
# The static-bias ones (SCUBA / SCUFO top-1, contrast accuracy) show only when the stores have them.
_DEMO_COLUMNS = [
    "trial", "method", "unknown_set", "closed_top1", "shifted_top1", "static_bias_gap", "scuba_top1",
    "scufo_top1", "contrast_acc", "auroc", "open_maf1", "binarized_auc", "fpr_at_95_tpr_first", "ece",
]

# The softmax trial's post-hoc detector rows the console prints; the other post-hoc rows (the
# other trials', RMDS/SCALE/fDBD/NNGuide/SHE/DICE, the evidential MPU / entropy / MI) are in the
# report and MLflow.
_CONSOLE_DETECTORS = ("energy", "maxlogit", "gen", "temp_msp", "mahalanobis", "knn", "vim", "react", "ash")

#: Videos per class of the demo's test splits: enough that a method's AUROC interval is at most
#: 8 points wide (docs/synthetic_data.md has the widths measured).
_DEMO_SPLITS = {"test": 48, "test_shifted": 48, "unknown": 80, "test_scuba": 30}

#: The pretraining set's motions: none of the demo's 10 known or 6 unknown ones (sharing the known
#: ones left the fine-tuned model no static bias to show: docs/synthetic_data.md).
PRETRAIN_MOTIONS: tuple[str, ...] = (
    "move_up_right", "move_down_left", "spiral", "spiral_in", "wobble", "figure_eight", "swing",
    "square_cw", "accelerate", "decelerate", "stop_go", "out_and_back", "teleport",
)

#: The demo's data sets: folder name suffix -> generator parameters over its defaults.
#: ``""``: the fine-tuning set (UCF-101's role): 10 known motions, scene = the class's own for 95%
#: of train/val/test videos. ``_unbiased``: the control arm's copy, `bias` = 1/K (K = 10 known
#: classes: the scene is independent of the class). ``_pretrain``: the pretraining set
#: (Kinetics-400's role): 13 other motions on 30 scene types with a weak bias, its own seed so that
#: none of its actors is an actor of the other two sets.
DEMO_DATA: dict[str, dict] = {
    "": {"bias": 0.95, "split_sizes": _DEMO_SPLITS},
    "_unbiased": {"bias": 0.1, "split_sizes": _DEMO_SPLITS},
    "_pretrain": {"seed": 1, "classes": PRETRAIN_MOTIONS, "scene_types": 30, "bias": 0.25,
                  "videos_per_class": 120,
                  "split_sizes": {"val": 0, "test": 10, "test_shifted": 10, "test_scuba": 0}},
}


def format_table(table: pd.DataFrame | None, columns: list[str] | None = None) -> str:
    """The results table as text: `value [95% interval]` in percent, `*` where the difference to
    the softmax baseline exceeds its interval, and a legend (`format_results_table`)."""
    from dear_ray.tracking.console import format_results_table

    return format_results_table(table, columns)


def mlflow_ui_hint(tracking_uri: str, experiment_id: str | None = None) -> str:
    """How to open the MLflow UI on the runs: the `mlflow ui` command with absolute paths, and
    the address of the experiment's runs in the classic view (MLflow 3.17 otherwise opens in its
    GenAI view, an empty traces page), in the saved view that compares the methods."""
    import sys

    from dear_ray.tracking.mlflow_view import runs_url

    mlflow_bin = Path(sys.executable).with_name("mlflow")
    runs = (runs_url(experiment_id) if experiment_id
            else "http://127.0.0.1:5000/#/experiments?workflowType=machine_learning")
    if tracking_uri.startswith("sqlite:"):
        return ("open the MLflow UI with:\n"
                f"  {mlflow_bin} ui --backend-store-uri {tracking_uri} --host 127.0.0.1 --port 5000 "
                f"--workers 1\nthen browse {runs}")
    return f"MLflow: {tracking_uri} (runs: {runs.replace('http://127.0.0.1:5000', tracking_uri)})"


def print_results(result) -> None:
    """Print a `SweepResult`: its table, failed trials, and how to open the MLflow UI."""
    print()
    table = result.table
    hidden = 0
    if table is not None and not table.empty and "trial" in table.columns:
        # post-hoc rows (<head>+<name>): the softmax trial's _CONSOLE_DETECTORS only
        posthoc = table["method"].str.contains("+", regex=False)
        shown = (table["trial"] == "softmax") & table["method"].str.split("+").str[-1].isin(_CONSOLE_DETECTORS)
        extra = posthoc & ~shown
        hidden = int(extra.sum())
        table = table[~extra]
    cols = [c for c in _DEMO_COLUMNS if c != "unknown_set" or (
        table is not None and not table.empty and table["unknown_set"].nunique() > 1)]
    print(format_table(table, cols))
    if table is not None and not table.empty and "softmax_control" in set(table.get("trial", [])):
        print("trial softmax_control: the softmax baseline trained on the unbiased copy "
              "(data/synth_unbiased): how well the motion itself can be learned")
    if hidden:
        print(f"({hidden} more post-hoc rows, of the other trials and the other scores: in the report and MLflow)")
    print(result.summary())
    report = result.sweep_dir / "report"
    if report.is_dir():
        print(f"\nfull tables and plots: {report}")
    print(mlflow_ui_hint(result.tracking_uri, result.experiment_id))


def ensure_dataset(root: Path, *, workers: int = 2, **params) -> str | None:
    """Generate the synthetic data set in `root` unless it already holds one with these parameters.

    Args:
        root: the data set's folder.
        workers: rendering processes.
        **params: `generate_dataset` parameters (the rest keep the generator's defaults).

    Returns:
        None when the existing data set was kept, else why it was generated (for the console).
    """
    from dear_ray.data.synth import SynthParams, generate_dataset
    from dear_ray.data.synth.generate import GENERATOR, GENERATOR_VERSION

    wanted = json.loads(json.dumps(SynthParams(**params).to_dict()))
    manifest = root / "manifest.json"
    if not manifest.is_file():
        reason = "absent" if not root.exists() else "incomplete (no manifest.json)"
    else:
        found = json.loads(manifest.read_text(encoding="utf-8"))
        same = (found.get("generator") == GENERATOR and found.get("version") == GENERATOR_VERSION
                and found.get("params") == wanted)
        if same:
            return None
        reason = (f"generated by {found.get('generator')} v{found.get('version')} with other "
                  "parameters than the demo's")
    print(f"generating the synthetic data set in {root} ({reason}) ...", flush=True)
    generate_dataset(root, workers=workers, **params)
    return reason


def _set_aside(sweep_dir: Path) -> Path | None:
    """Move an earlier sweep folder out of the way (its trials used other data); returns where."""
    if not sweep_dir.exists():
        return None
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    target = sweep_dir.with_name(f"{sweep_dir.name}.old-{stamp}")
    shutil.move(str(sweep_dir), str(target))
    return target


def run_demo(*, data_dir: Path = Path("data/synth"), sweep_file: Path = Path("jobs/sweeps/demo.yaml")):
    """Generate the demo's two data sets if needed, run (or resume) the demo sweep, print the table.

    The data sets go to `data_dir` (biased) and `<data_dir>_unbiased` (the control arm's); the
    sweep file names the same folders (`data.data_root`).
    """
    from dear_ray.data.synth import summarize_dataset
    from dear_ray.tune import load_sweep, run_sweep

    start = time.perf_counter()
    data_dir = Path(data_dir)
    regenerated = []
    for suffix, params in DEMO_DATA.items():
        root = data_dir.with_name(data_dir.name + suffix)
        if ensure_dataset(root, **params) is not None:
            regenerated.append(root)
        print(summarize_dataset(root), flush=True)
    print(f"data sets ready ({time.perf_counter() - start:.0f} s)", flush=True)
    spec = load_sweep(sweep_file)
    if regenerated and (moved := _set_aside(spec.sweep_dir)) is not None:
        print(f"{', '.join(map(str, regenerated))} (re)generated: the earlier results in "
              f"{spec.sweep_dir} were moved to {moved}; every trial trains again", flush=True)
    elif spec.sweep_dir.exists():
        print(f"resuming {spec.sweep_dir}: finished trials are reused (delete that folder to "
              "train from scratch)", flush=True)
    result = run_sweep(spec, resume=True)
    print_results(result)
    print(f"demo wall time: {time.perf_counter() - start:.0f} s")
    return result
