"""The main job behind `make demo`: synthetic data -> demo sweep -> results table -> MLflow UI.

Re-running it is cheap: the data set is generated only when absent, and the sweep resumes, so
finished trials are not trained again (delete `runs/<sweep name>` to train from scratch).
"""

from __future__ import annotations

import time
from pathlib import Path

import pandas as pd

# The columns the demo prints, in order; the full table (every metric) is in MLflow and on disk.
_DEMO_COLUMNS = [
    "method", "closed_top1", "shifted_top1", "static_bias_gap", "auroc", "open_maf1",
    "binarized_auc", "open_auc", "fpr_at_95_tpr", "ece",
]


def format_table(table: pd.DataFrame | None, columns: list[str] | None = None) -> str:
    """A plain-text results table (percentages with one decimal), without optional dependencies."""
    if table is None or table.empty:
        return "(no results: no trial left score stores)"
    cols = [c for c in (columns or list(table.columns)) if c in table.columns]
    shown = table[cols].copy()
    for col in cols:
        if pd.api.types.is_float_dtype(shown[col]):
            shown[col] = shown[col].map(lambda v: "-" if pd.isna(v) else f"{100 * v:.1f}"
                                        if col != "threshold" else f"{v:.4g}")
    return shown.to_string(index=False)


def print_results(result) -> None:
    """Print a `SweepResult`: its table, failed trials, and how to open the MLflow UI."""
    print()
    print(format_table(result.table, _DEMO_COLUMNS))
    print("(percent; closed_top1/shifted_top1: top-1 on test/test_shifted; auroc, open_maf1, "
          "binarized_auc, open_auc: unknown detection; lower fpr_at_95_tpr and ece are better)")
    print(result.summary())
    print(f"\nfull tables and plots: {result.sweep_dir / 'report'}")
    if result.tracking_uri.startswith("sqlite:"):
        print("open the MLflow UI with:\n"
              f"  .venv/bin/mlflow ui --backend-store-uri {result.tracking_uri} "
              "--host 127.0.0.1 --port 5000 --workers 1\n"
              "then browse http://127.0.0.1:5000")
    else:
        print(f"MLflow: {result.tracking_uri}")


def run_demo(*, data_dir: Path = Path("data/synth"), sweep_file: Path = Path("jobs/sweeps/demo.yaml")):
    """Generate the synthetic data set if absent, run (or resume) the demo sweep, print the table."""
    from dear_ray.data.synth import generate_dataset, summarize_dataset
    from dear_ray.tune import load_sweep, run_sweep

    start = time.perf_counter()
    if not (data_dir / "manifest.json").exists():
        print(f"generating the synthetic biased-actions data set in {data_dir} ...", flush=True)
        generate_dataset(data_dir, workers=2)
    print(summarize_dataset(data_dir), flush=True)
    spec = load_sweep(sweep_file)
    result = run_sweep(spec, resume=True)
    print_results(result)
    print(f"demo wall time: {time.perf_counter() - start:.0f} s")
    return result
