"""The Pareto front of a multi-objective sweep: which trials no other trial beats on every objective.

A trial A dominates a trial B when A is at least as good as B on every objective and strictly
better on one ("good" meaning larger for an objective to maximise, smaller for one to minimise).
The front is the set of trials that no trial dominates; trials with equal values on every
objective do not dominate each other, so both stay. A trial with a missing (NaN) objective value
cannot be compared and is left out of the front (the table says so in its `on_front` column).

`pareto_front(table, objectives)` marks the front in a table with one row per trial;
`plot_pareto_front(...)` draws every pair of objectives, the front in colour and the rest grey.
"""

from __future__ import annotations

from collections.abc import Mapping
from itertools import combinations
from pathlib import Path

import numpy as np
import pandas as pd

from dear_ray.metrics.plots import _figure, _save

DIRECTIONS = ("max", "min")


def check_objectives(objectives: Mapping[str, str], *, where: str = "objectives") -> dict[str, str]:
    """`{metric: "max" | "min"}` with at least two metrics, or a ValueError naming the entry."""
    if not isinstance(objectives, Mapping) or len(objectives) < 2:
        raise ValueError(f"{where}: expected a mapping of at least two metrics to 'max' or 'min' "
                         f"(e.g. {{closed_top1: max, auroc: max}}), got {objectives!r}")
    bad = {name: way for name, way in objectives.items() if way not in DIRECTIONS}
    if bad:
        raise ValueError(f"{where}: {bad!r}: each direction must be 'max' or 'min'")
    return {str(name): str(way) for name, way in objectives.items()}


def non_dominated(values: np.ndarray, maximize: list[bool] | tuple[bool, ...]) -> np.ndarray:
    """Boolean mask of the rows of `values` (n trials x m objectives) that no other row dominates.

    Rows with a NaN are never on the front and never dominate another row.
    """
    values = np.asarray(values, dtype=np.float64)
    if values.ndim != 2 or values.shape[1] != len(maximize):
        raise ValueError(f"values of shape {values.shape}: expected (trials, {len(maximize)})")
    signs = np.where(np.asarray(maximize, dtype=bool), 1.0, -1.0)
    gains = values * signs  # larger is better on every column
    valid = ~np.isnan(gains).any(axis=1)
    g = gains[valid]
    # dominated[j]: some i with g[i] >= g[j] everywhere and g[i] > g[j] somewhere
    at_least = (g[:, None, :] >= g[None, :, :]).all(axis=2)
    better = (g[:, None, :] > g[None, :, :]).any(axis=2)
    dominated = (at_least & better).any(axis=0)
    mask = np.zeros(len(values), dtype=bool)
    mask[np.flatnonzero(valid)[~dominated]] = True
    return mask


def pareto_front(table: pd.DataFrame, objectives: Mapping[str, str]) -> pd.DataFrame:
    """`table` (one row per trial) with an `on_front` column, the front first, then by the first
    objective. Raises a ValueError naming an objective the table lacks."""
    objectives = check_objectives(objectives)
    missing = [name for name in objectives if name not in table.columns]
    if missing:
        raise ValueError(f"Pareto front: the results have no column {missing}; "
                         f"available: {sorted(table.columns)}")
    values = table[list(objectives)].to_numpy(dtype=np.float64)
    out = table.copy()
    out["on_front"] = non_dominated(values, [way == "max" for way in objectives.values()])
    first, way = next(iter(objectives.items()))
    return out.sort_values(["on_front", first], ascending=[False, way == "min"],
                           kind="stable").reset_index(drop=True)


def plot_pareto_front(front: pd.DataFrame, objectives: Mapping[str, str], path: str | Path, *,
                      label: str = "trial") -> Path:
    """One panel per pair of objectives: every trial a point, the front's trials in colour and
    named by their `label` column. `front` is `pareto_front`'s table."""
    objectives = check_objectives(objectives)
    pairs = list(combinations(objectives, 2))
    fig = _figure((4.2 * len(pairs), 4.0))
    axes = fig.subplots(1, len(pairs), squeeze=False)[0]
    on = front["on_front"].to_numpy(dtype=bool)
    for ax, (x, y) in zip(axes, pairs):
        ax.scatter(front.loc[~on, x], front.loc[~on, y], c="0.7", s=18, label="dominated")
        ax.scatter(front.loc[on, x], front.loc[on, y], c="tab:red", s=28, label="Pareto front")
        for _, row in front[on].iterrows():
            ax.annotate(str(row[label]), (row[x], row[y]), fontsize=7, xytext=(3, 3),
                        textcoords="offset points")
        ax.set_xlabel(f"{x} ({objectives[x]})")
        ax.set_ylabel(f"{y} ({objectives[y]})")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.suptitle("Pareto front (the front of all objectives, shown two at a time)", fontsize=9)
    return _save(fig, path)
