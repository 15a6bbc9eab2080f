"""The MLflow names of the results table's metrics (`<set>/<metric>`, a protocol prefix) and a
row's metrics under those names."""

from __future__ import annotations

import math
import re

import pandas as pd

from dear_ray.metrics.bootstrap import CI_KEYS
from dear_ray.metrics.report import METRIC_KEYS, UNKNOWN_SET_KEYS


def metric_name(key: str, unknown_set: str, protocol: str = "dear") -> str:
    """The MLflow name of table column `key` of a row about `unknown_set` under `protocol`:
    `<set>/<key>` for the metrics about an unknown set (and their `_ci_low`, `_ci_high`,
    `_diff_sig`), `key` otherwise; a protocol other than `dear` prefixes every name
    (`psl/hmdb51/auroc`, `psl/closed_top1`). Characters MLflow refuses in a name (e.g. `=`) become `_`."""
    base = re.sub(r"_(ci_low|ci_high|diff_sig)$", "", key)
    name = f"{unknown_set}/{key}" if base in UNKNOWN_SET_KEYS else key
    if protocol != "dear":
        name = f"{protocol}/{name}"
    return re.sub(r"[^\w./\- :]", "_", name)


def mlflow_metrics(row: dict) -> dict[str, float]:
    """The finite metrics of a table row under their MLflow names (`metric_name`, the row's
    `protocol`, `dear` when absent); `*_diff_sig` as 1.0 / 0.0 where a baseline exists."""
    out = {}
    protocol = str(row.get("protocol") or "dear")
    keys = [*METRIC_KEYS, *(f"{k}_{side}" for k in CI_KEYS for side in ("ci_low", "ci_high", "diff_sig"))]
    for key in keys:
        value = row.get(key)
        if value is None or value is pd.NA:
            continue
        value = float(value)
        if not math.isnan(value):
            out[metric_name(key, str(row["unknown_set"]), protocol)] = value
    return out
