"""What every command module shares: the one-line user error and argument types."""

from __future__ import annotations

import argparse


class CliError(Exception):
    """A user error reported as one line on stderr with exit status 2."""


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text}")
    return value


def _name_list(text: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise argparse.ArgumentTypeError(f"expected comma-separated trial names, got {text!r}")
    return names


def _parse_overrides(items: list[str]) -> dict:
    import yaml

    overrides = {}
    for item in items:
        field, sep, value = item.partition("=")
        if not sep or not field:
            raise CliError(f"--set expects FIELD=VALUE, got {item!r}")
        overrides[field.strip()] = yaml.safe_load(value)
    return overrides


SUMMARY_COLUMNS = ["run", "method", "unknown_set", "closed_top1", "shifted_top1", "static_bias_gap",
                   "scuba_top1", "scufo_top1", "contrast_acc", "auroc", "open_maf1",
                   "binarized_auc", "fpr_at_95_tpr_first", "ece"]


def _results_text(table, columns: str | None) -> str:
    from dear_ray.tracking.console import format_results_table

    if table is None or table.empty:
        return format_results_table(table)
    if columns == "all":
        cols = None
    elif columns:
        cols = [c.strip() for c in columns.split(",") if c.strip()]
    else:
        cols = [c for c in SUMMARY_COLUMNS if c != "run" or table["run"].nunique() > 1]
        if "trial" in table.columns and "run" not in cols and table["trial"].nunique() > 1:
            cols.insert(0, "trial")
        keys = [c for c in ("run", "method", "unknown_set") if c in table.columns]
        if "score" in table.columns and table.duplicated(keys).any():
            cols.insert(cols.index("method") + 1, "score")  # one method under several scores
    return format_results_table(table, cols)
