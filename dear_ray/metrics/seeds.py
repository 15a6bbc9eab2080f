"""Across-seed summary of a results table: the mean over seeds with a Student-t 95% interval.

Trials that differ only in `seed` are one setting. For each (setting, method, score, unknown set)
the summary gives the mean of each metric over its n seeds and the t-interval
`mean +- t_{0.975, n-1} * sd / sqrt(n)` (sd with ddof 1; NaN for n = 1). `M_diff_sig` says whether
the t-interval of the per-seed differences to the softmax baseline (paired by seed, same known
set, unknown set and backbone) excludes 0 (NA with fewer than 2 paired seeds). The t-interval, not
a percentile over seeds: with the usual 3 to 5 seeds a percentile interval is just the range.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd
from scipy import stats

from dear_ray.metrics.bootstrap import CI_KEYS, CI_LEVEL

BASELINE = ("softmax", "msp")
_ID_COLUMNS = ("method", "score", "head", "known", "unknown_set", "backbone")


def t_interval(values, level: float = CI_LEVEL) -> tuple[float, float, float]:
    """`(mean, low, high)` of the Student-t interval of the mean of `values` (NaN ignored)."""
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return float("nan"), float("nan"), float("nan")
    mean = float(v.mean())
    if v.size < 2:
        return mean, float("nan"), float("nan")
    half = float(stats.t.ppf(0.5 + level / 2, v.size - 1) * v.std(ddof=1) / np.sqrt(v.size))
    return mean, mean - half, mean + half


def seed_summary(table: pd.DataFrame, settings: Mapping[str, str] | None = None) -> pd.DataFrame:
    """One row per (setting, method, score, unknown set) of a per-trial results table.

    Args:
        table: `report_sweep`'s table (columns `trial`, `seed`, `_ID_COLUMNS`, the metrics).
        settings: trial -> a key equal for trials that differ only in `seed` (e.g. the resolved
            config without its seed); a trial without one is its own setting.

    Returns:
        `setting` (the first trial of the group), `trials`, `seeds`, `num_seeds`, `_ID_COLUMNS`, then
        per metric M of `CI_KEYS`: `M` (mean over seeds), `M_ci_low`, `M_ci_high`, `M_diff_sig`.
    """
    if table.empty:
        return pd.DataFrame()
    settings = dict(settings or {})
    work = table.copy()
    work["_setting"] = [settings.get(t, f"trial:{t}") for t in work["trial"]]
    baseline = work[(work["method"] == BASELINE[0]) & (work["score"] == BASELINE[1])]
    base_index = {}
    for _, row in baseline.iterrows():
        key = (row["known"], row["unknown_set"], row["backbone"], row["seed"])
        base_index[key] = None if key in base_index else row  # ambiguous -> no pairing
    records = []
    for (_, *ident), rows in work.groupby(["_setting", *_ID_COLUMNS], sort=False, dropna=False):
        record = {"setting": rows["trial"].iloc[0], "trials": ",".join(map(str, rows["trial"])),
                  "seeds": ",".join(str(s) for s in rows["seed"]), "num_seeds": len(rows),
                  **dict(zip(_ID_COLUMNS, ident, strict=True))}
        is_base = (record["method"], record["score"]) == BASELINE
        for metric in CI_KEYS:
            if metric not in rows:
                continue
            mean, low, high = t_interval(rows[metric])
            record.update({metric: mean, f"{metric}_ci_low": low, f"{metric}_ci_high": high})
            diffs = []
            for _, row in rows.iterrows():
                base = base_index.get((row["known"], row["unknown_set"], row["backbone"], row["seed"]))
                if base is not None and not is_base:
                    diffs.append(row[metric] - base[metric])
            _, d_low, d_high = t_interval(diffs)
            record[f"{metric}_diff_sig"] = pd.NA if np.isnan(d_low) else bool(d_low > 0 or d_high < 0)
        records.append(record)
    out = pd.DataFrame(records)
    for col in [c for c in out.columns if c.endswith("_diff_sig")]:
        out[col] = out[col].astype("boolean")
    return out
