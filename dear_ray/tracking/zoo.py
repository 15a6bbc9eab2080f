"""DEAR's model-zoo table: our results beside the published numbers (DEAR paper, Tables 1-2) and
the gap.

DEAR's README lays out its model zoo as Model | Open maF1 (%) HMDB / MiT | Open Set AUC (%) HMDB /
MiT | Closed Set ACC (%). `zoo_table(results)` builds that table from a results table (the
aggregator's or `evaluate_stores`' rows, one per trial, method and unknown set) for every
(trial, method) whose backbone and method the paper reports: the four UCF-101 backbones
(`BACKBONES`) and OpenMax, MC Dropout, BNN, SoftMax, RPL, DEAR, with HMDB-51 (`hmdb51`) and MiT-v2
(`mit_v2`) as unknown sets. Each metric gets three columns: ours, `paper_*` and `diff_*` (ours
minus published), all in percent. "Open-set AUC" is the paper's binarised AUC at the 95% training
threshold (`binarized_auc`, docs/metrics.md), never AUROC. The paper gives closed-set accuracy for
DEAR only; the other rows show ours and leave the published cell empty.

`write_zoo_report(results, out_dir)` writes `zoo.csv` and `zoo.md` when any row matches
(`dear-ray test` does; the sweep aggregator is where a sweep's table would call it).
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

# dear_ray backbone preset -> the paper's name (DEAR paper, Sec. 4)
BACKBONES = {"i3d_r50": "I3D", "tsm_r50": "TSM", "tpn_slowonly_r50": "TPN",
             "slowfast_r50_8x8": "SlowFast"}
# results-table method -> the paper's column, in the paper's order
METHODS = {"openmax": "OpenMax", "mc_dropout": "MC Dropout", "bnn": "BNN", "softmax": "SoftMax",
           "rpl": "RPL", "dear": "DEAR"}
UNKNOWN_SETS = {"hmdb51": "HMDB", "mit_v2": "MiT"}
# DEAR (ICCV 2021), Tables 1/2: (backbone, unknown set) -> method -> (Open maF1,
# open-set AUC), percent, in METHODS order
_OPEN = {
    ("I3D", "hmdb51"): ((67.85, 74.34), (71.13, 75.07), (71.57, 74.66), (73.19, 75.68),
                        (71.48, 75.20), (77.24, 77.08)),
    ("TSM", "hmdb51"): ((74.17, 77.07), (71.52, 73.85), (69.11, 73.42), (78.27, 77.99),
                        (69.34, 73.62), (84.69, 78.65)),
    ("TPN", "hmdb51"): ((65.27, 74.12), (68.45, 74.13), (63.81, 72.68), (76.23, 77.97),
                        (70.31, 75.32), (81.79, 79.23)),
    ("SlowFast", "hmdb51"): ((73.57, 78.76), (70.55, 75.41), (69.19, 74.78), (78.04, 79.16),
                             (68.32, 74.23), (85.48, 82.94)),
    ("I3D", "mit_v2"): ((66.22, 77.76), (68.11, 79.14), (68.65, 79.50), (68.84, 79.94),
                        (68.11, 79.16), (69.98, 81.54)),
    ("TSM", "mit_v2"): ((71.81, 83.05), (65.32, 78.35), (64.28, 77.39), (71.68, 82.38),
                        (63.92, 77.28), (70.15, 83.92)),
    ("TPN", "mit_v2"): ((64.80, 76.26), (65.77, 77.76), (61.40, 75.32), (70.82, 81.35),
                        (66.21, 78.21), (71.18, 81.80)),
    ("SlowFast", "mit_v2"): ((72.48, 80.62), (67.53, 78.49), (65.22, 77.39), (74.42, 82.88),
                             (66.33, 77.42), (77.28, 86.99)),
}
# DEAR's closed-set accuracy (percent); the paper gives it for DEAR only
DEAR_CLOSED_TOP1 = {"I3D": 93.89, "TSM": 94.48, "TPN": 96.30, "SlowFast": 96.48}
METRICS = {"open_maf1": "Open maF1", "binarized_auc": "Open-set AUC"}


def published(backbone: str, method: str, unknown_set: str) -> tuple[float, float] | None:
    """The paper's (Open maF1, open-set AUC) in percent, by paper backbone name (`I3D`...),
    results-table method (`dear`...) and unknown set (`hmdb51`, `mit_v2`); None if not reported."""
    row = _OPEN.get((backbone, unknown_set))
    if row is None or method not in METHODS:
        return None
    return row[list(METHODS).index(method)]


def zoo_columns() -> list[str]:
    """The value columns of `zoo_table`, in order: per metric and unknown set ours, `paper_*`,
    `diff_*`; then `closed_top1`, `paper_closed_top1`, `diff_closed_top1`."""
    cols = []
    for metric in METRICS:
        for unknown in UNKNOWN_SETS:
            name = f"{metric}_{unknown}"
            cols += [name, f"paper_{name}", f"diff_{name}"]
    return cols + ["closed_top1", "paper_closed_top1", "diff_closed_top1"]


def zoo_table(results: pd.DataFrame) -> pd.DataFrame:
    """DEAR's model-zoo table for the rows of `results` the paper reports.

    Args:
        results: a results table with columns `method`, `backbone`, `unknown_set`,
            `open_maf1`, `binarized_auc`, `closed_top1` (fractions in [0, 1]) and optionally
            `trial` (else `run`).

    Returns:
        One row per (trial, method), in the paper's backbone and method order: `trial`,
        `backbone` (the paper's name), `method` (the paper's name), `model` (`I3D + DEAR`), then
        `zoo_columns()` in percent (NaN where the paper or our table has no value). Empty when no
        row matches.
    """
    if results is None or results.empty or not {"method", "backbone", "unknown_set"} <= set(results):
        return pd.DataFrame(columns=["trial", "backbone", "method", "model", *zoo_columns()])
    trial_col = "trial" if "trial" in results else "run"
    rows = []
    for (trial, method), group in results.groupby([trial_col, "method"], sort=False):
        backbone = BACKBONES.get(str(group["backbone"].iloc[0]))
        if backbone is None or method not in METHODS:
            continue
        row = {"trial": trial, "backbone": backbone, "method": METHODS[method],
               "model": f"{backbone} + {METHODS[method]}"}
        for unknown in UNKNOWN_SETS:
            ours = group[group["unknown_set"] == unknown]
            paper = published(backbone, method, unknown)
            for i, metric in enumerate(METRICS):
                value = 100 * float(ours[metric].iloc[0]) if len(ours) else math.nan
                ref = paper[i] if paper is not None else math.nan
                name = f"{metric}_{unknown}"
                row.update({name: value, f"paper_{name}": ref, f"diff_{name}": value - ref})
        closed = 100 * float(group["closed_top1"].iloc[0])
        ref = DEAR_CLOSED_TOP1.get(backbone, math.nan) if method == "dear" else math.nan
        row.update(closed_top1=closed, paper_closed_top1=ref, diff_closed_top1=closed - ref)
        rows.append(row)
    table = pd.DataFrame(rows, columns=["trial", "backbone", "method", "model", *zoo_columns()])
    order = {b: i for i, b in enumerate(BACKBONES.values())}
    methods = {m: i for i, m in enumerate(METHODS.values())}
    key = table["backbone"].map(order) * 100 + table["method"].map(methods)
    return table.iloc[key.argsort(kind="stable")].reset_index(drop=True)


def _cell(ours: float, paper: float, diff: float) -> str:
    if math.isnan(ours):
        return "-"
    if math.isnan(paper):
        return f"{ours:.2f} / -"
    return f"{ours:.2f} / {paper:.2f} ({diff:+.2f})"


def format_zoo_markdown(zoo: pd.DataFrame) -> str:
    """The zoo table as markdown, DEAR's README columns; each cell `ours / published (diff)`."""
    head = ["Model", "trial"] + [f"{METRICS[m]} {UNKNOWN_SETS[u]} (%)" for m in METRICS
                                 for u in UNKNOWN_SETS] + ["Closed-set acc (%)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    names = [f"{m}_{u}" for m in METRICS for u in UNKNOWN_SETS] + ["closed_top1"]
    for row in zoo.to_dict("records"):
        cells = [_cell(row[n], row[f"paper_{n}"], row[f"diff_{n}"]) for n in names]
        lines.append("| " + " | ".join([row["model"], str(row["trial"]), *cells]) + " |")
    lines.append("")
    lines.append("Cells: ours / published in DEAR's Tables 1-2 (ours - published), percent. Open-set "
                 "AUC = binarised AUC at the 95% training threshold. The paper gives closed-set "
                 "accuracy for DEAR only.")
    return "\n".join(lines) + "\n"


def write_zoo_report(results: pd.DataFrame, out_dir: str | Path) -> Path | None:
    """Write `zoo.csv` and `zoo.md` into `out_dir` when some row of `results` is in the paper;
    returns the markdown file, or None (nothing written)."""
    zoo = zoo_table(results)
    if zoo.empty:
        return None
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    zoo.to_csv(out_dir / "zoo.csv", index=False)
    path = out_dir / "zoo.md"
    path.write_text(format_zoo_markdown(zoo))
    return path


__all__ = ["BACKBONES", "DEAR_CLOSED_TOP1", "METHODS", "UNKNOWN_SETS", "format_zoo_markdown",
           "published", "write_zoo_report", "zoo_columns", "zoo_table"]
