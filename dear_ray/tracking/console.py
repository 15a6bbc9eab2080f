"""The results table as a person reads it in a terminal: `value [low, high]` in percent.

`format_results_table(table, columns)` takes `report_sweep`'s table (or `seed_summary`'s, which has
the same column names) and prints each metric M as `M [M_ci_low, M_ci_high]` in percent with one
decimal, a `*` where `M_diff_sig` is true (the paired difference to the softmax baseline on the same
videos, or over the same seeds, excludes 0), and a legend of which direction is better. The
static-bias columns (`OPTIONAL_COLUMNS`: `scuba_top1`, `scufo_top1`, `contrast_acc`) are left out
when no row has a value (a sweep without SCUBA / SCUFO stores).
"""

from __future__ import annotations

import math

import pandas as pd

HIGHER_IS_BETTER = (
    "closed_top1", "closed_top5", "closed_mean_class_acc", "open_maf1", "binarized_auc", "auroc",
    "aupr_in_ap", "aupr_out_ap", "aupr_in_trapz", "aupr_out_trapz", "open_auc", "shifted_top1",
    "scuba_top1", "contrast_acc",
)
# scufo_top1: top-1 on still frames (appearance without motion); a model should NOT recognise them
LOWER_IS_BETTER = ("fpr_at_95_tpr_first", "fpr_at_95_tpr_nearest", "ece", "static_bias_gap", "scufo_top1")
OPTIONAL_COLUMNS = ("scuba_top1", "scufo_top1", "contrast_acc")
SIGNIFICANT_MARK = "*"


def _number(value) -> float | None:
    if value is None or value is pd.NA:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(number) else number


def format_cell(row: pd.Series, column: str) -> str:
    """One cell: a metric as `88.5 [84.0, 92.1]` (percent), `threshold` with 4 significant digits,
    anything else as text; `-` for a missing value."""
    value = row.get(column)
    if column in HIGHER_IS_BETTER or column in LOWER_IS_BETTER:
        number = _number(value)
        if number is None:
            return "-"
        text = f"{100 * number:.1f}"
        low, high = _number(row.get(f"{column}_ci_low")), _number(row.get(f"{column}_ci_high"))
        if low is not None and high is not None:
            text += f" [{100 * low:.1f}, {100 * high:.1f}]"
        sig = row.get(f"{column}_diff_sig")
        if sig is not None and sig is not pd.NA and bool(sig):
            text += f" {SIGNIFICANT_MARK}"
        return text
    number = _number(value) if column == "threshold" else None
    if number is not None:
        return f"{number:.4g}"
    return "-" if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)) else str(value)


def format_results_table(table: pd.DataFrame | None, columns: list[str] | None = None) -> str:
    """A plain-text table of `columns` (default: every column without an interval suffix) with
    intervals, significance marks and a legend.

    Args:
        table: the results table (one row per method and unknown set).
        columns: the columns to print, in order; names missing from the table are skipped, and so
            are `OPTIONAL_COLUMNS` without a value in any row.
    """
    if table is None or table.empty:
        return "(no results: no trial left score stores)"
    if columns is None:
        columns = [c for c in table.columns if not c.endswith(("_ci_low", "_ci_high", "_diff_sig"))]
    cols = [c for c in columns if c in table.columns
            and not (c in OPTIONAL_COLUMNS and all(_number(v) is None for v in table[c]))]
    cells = [[format_cell(row, c) for c in cols] for _, row in table.iterrows()]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(cols)]
    numeric = [c in HIGHER_IS_BETTER or c in LOWER_IS_BETTER or c == "threshold" for c in cols]

    def line(values: list[str]) -> str:
        return "  ".join(v.rjust(w) if num else v.ljust(w)
                         for v, w, num in zip(values, widths, numeric, strict=True)).rstrip()

    lines = [line(cols), line(["-" * w for w in widths]), *(line(r) for r in cells)]
    higher = [c for c in cols if c in HIGHER_IS_BETTER]
    lower = [c for c in cols if c in LOWER_IS_BETTER]
    has_ci = any(f"{c}_ci_low" in table.columns for c in higher + lower)
    legend = ["metrics in percent" + (", value [95% interval]" if has_ci else "")
              + ("; threshold in the score's units" if "threshold" in cols else "")]
    if higher:
        legend.append("higher is better: " + ", ".join(higher))
    if lower:
        legend.append("lower is better: " + ", ".join(lower))
    if any(f"{c}_diff_sig" in table.columns for c in higher + lower):
        legend.append(f"{SIGNIFICANT_MARK} the difference to softmax on the same videos (or seeds) lies outside "
                      "its 95% interval (paired bootstrap; t-interval over seeds)")
    return "\n".join(lines + [""] + legend)
