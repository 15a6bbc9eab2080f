"""How a sweep reads in the MLflow UI: the parent run's short table, a saved view, run colours.

What a client can shape in MLflow 3.17's UI, and what this module sets with it:

- the parent run's description (tag `mlflow.note.content`, at most 8000 characters, rendered as
  markdown on the run's page): `short_table` is one row per (trial, method) and only the headline
  columns (top-1, shifted top-1, AUROC and open-set macro-F1 per unknown set), values without
  their intervals, so it always fits; it links the full table (`report/results.md`, every
  metric with its interval) and the saved view;
- a saved view (experiment tag `mlflow.sharedViewState.<key>`, listed under the runs page's
  "Views" and opened by `?viewStateShareKey=<key>`): `view_state` lists the method runs (tag
  `method_kind` trained or post-hoc; the post-hoc detector rows stay one filter away) sorted by
  AUROC, with the AUROC and top-1 columns side by side right after the run names, and a chart
  section whose first two bar charts are AUROC and top-1 of every method;
- each method run's colour (tag `mlflow.runColor`): one of `PALETTE` in table order (the UI
  otherwise derives a colour from the run id, and among ten runs some share one), and its
  description: its headline numbers in one line (`method_note`).

The saved view's state is the UI's own JSON (the keys its "Save as new view" writes); a UI that
cannot read it reports the view as invalid and leaves the runs page as it is.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Sequence

import pandas as pd
from mlflow import MlflowClient
from mlflow.utils.validation import MAX_TAG_VAL_LENGTH

from dear_ray.tracking.console import SIGNIFICANT_MARK

NOTE_TAG = "mlflow.note.content"
COLOR_TAG = "mlflow.runColor"
METHOD_KIND_TAG = "method_kind"  # trained (the trial's own head), post-hoc, detector (<head>+<x>)
VIEW_KEY = "dear_ray-methods"
VIEW_NAME = "methods compared"
VIEW_TAG_PREFIX = "mlflow.sharedViewState."
LOCAL_UI = "http://127.0.0.1:5000"
# tab10, then the lighter tab20 shades: the first ten methods get clearly distinct colours
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
           "#7f7f7f", "#bcbd22", "#17becf", "#aec7e8", "#ffbb78", "#98df8a", "#ff9896",
           "#c5b0d5", "#c49c94", "#f7b6d2", "#c7c7c7", "#dbdb8d", "#9edae5")
HEADLINE = {"closed_top1": "top-1", "shifted_top1": "shifted top-1", "auroc": "AUROC",
            "open_maf1": "open maF1"}
_PER_SET = ("auroc", "open_maf1")


def method_kind(method: str, own_method: str) -> str:
    """`trained` for a trial's own head, `detector` for a post-hoc detector row (`<head>+<x>`),
    `post-hoc` for the other rows a trial's stores yield (MC dropout, OpenMax)."""
    if method == own_method:
        return "trained"
    return "detector" if "+" in method else "post-hoc"


def method_colors(rows: Sequence[tuple[str, str]], kinds: Sequence[str]) -> dict:
    """(trial, method) -> colour: the trained and post-hoc rows first, in table order, then the
    detector rows."""
    order = [r for r, k in zip(rows, kinds, strict=True) if k != "detector"] + \
        [r for r, k in zip(rows, kinds, strict=True) if k == "detector"]
    return {row: PALETTE[i % len(PALETTE)] for i, row in enumerate(order)}


# --------------------------------------------------------------------------------------------
# the parent run's description


def short_table(table: pd.DataFrame, *, title: str, links: Sequence[tuple[str, str]] = (),
                notes: Sequence[str] = (), limit: int = MAX_TAG_VAL_LENGTH) -> str:
    """The results as markdown that fits MLflow's description (`limit` characters).

    One row per method (trial and method, in table order; the post-hoc detector rows
    `<head>+<detector>` summed up in one line under it), the columns of `HEADLINE` that have a
    value (AUROC and open maF1 once per unknown set), in percent with the `*` of the full
    table, as a fixed-width block (MLflow's markdown tables have no cell padding). Rows that
    would not fit are counted in a last line.

    Args:
        table: `report_sweep`'s table.
        title: the first line (bold).
        links: (text, url) pairs shown under the title (the full table, the saved view).
        notes: warning lines shown above the table (e.g. trials trained under other settings).
    """
    sets = list(dict.fromkeys(str(s) for s in table["unknown_set"]))
    columns: list[tuple[str, str | None, str]] = []  # (key, unknown set, header)
    for key in ("closed_top1", "shifted_top1"):
        if key in table and table[key].notna().any():
            columns.append((key, None, HEADLINE[key]))
    for unknown_set in sets:
        for key in _PER_SET:
            part = table[table["unknown_set"].astype(str) == unknown_set]
            if key in part and part[key].notna().any():
                header = HEADLINE[key] + (f" ({unknown_set})" if len(sets) > 1 or
                                          unknown_set != "unknown" else "")
                columns.append((key, unknown_set, header))
    rows = _pivot(table, columns)
    head = [f"**{title}**"]
    if links:
        head.append(" · ".join(f"[{text}]({url})" for text, url in links))
    head += [f"> {line}" for line in notes]
    body = []
    for (trial, method), values in rows.items():
        if "+" not in method:
            body.append([trial, method, *("-" if number is None else f"{100 * number:.1f}"
                                          + (f" {SIGNIFICANT_MARK}" if sig else "  ")
                                          for number, sig in values)])
    header = ["trial", "method", *(h for _, _, h in columns)]
    widths = [max(len(r[i]) for r in [header, *body]) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        return "  ".join(c.ljust(w) if i < 2 else c.rjust(w)
                         for i, (c, w) in enumerate(zip(cells, widths, strict=True))).rstrip()

    tail = "```\n\n" + "\n\n".join(filter(None, [_detector_line(rows, columns), (
        f"percent, higher is better; {SIGNIFICANT_MARK} = differs from softmax on the same videos "
        "beyond its 95% interval; intervals and every other metric: the full table")]))
    fixed = "\n".join(head) + "\n\n```\n" + line(header) + "\n" + line(["-" * w for w in widths]) + "\n"
    kept = []
    for i, cells in enumerate(body):
        text, more = line(cells), len(body) - i - 1
        reserve = len(f"... {more} more rows: the full table\n") if more else 0
        if len(fixed) + sum(len(k) + 1 for k in kept) + len(text) + 1 + reserve + len(tail) > limit:
            kept.append(f"... {len(body) - i} more rows: the full table")
            break
        kept.append(text)
    return fixed + "\n".join(kept) + "\n" + tail


def method_note(rows: pd.DataFrame) -> str:
    """A method run's description: its headline numbers in one line (`rows`: the method's rows of
    the table, one per unknown set)."""
    first = rows.iloc[0]
    parts = []
    for key in ("closed_top1", "shifted_top1"):
        parts += _numbers(first, key, HEADLINE[key])
    for _, row in rows.iterrows():
        for key in _PER_SET:
            parts += _numbers(row, key, f"{HEADLINE[key]} ({row['unknown_set']})")
    where = ", ".join(str(first[c]) for c in ("trial", "backbone") if c in rows and pd.notna(first[c]))
    return (f"**{first['method']}**" + (f" ({where})" if where else "") + ": " + " · ".join(parts)
            + f" (percent; {SIGNIFICANT_MARK}: differs from softmax on the same videos beyond its "
              "95% interval; the sweep's table: the parent run)")


def _numbers(row: pd.Series, key: str, label: str) -> list[str]:
    value = row.get(key)
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return []
    sig = row.get(f"{key}_diff_sig")
    mark = f" {SIGNIFICANT_MARK}" if sig is not None and sig is not pd.NA and bool(sig) else ""
    return [f"{label} {100 * float(value):.1f}{mark}"]


def _detector_line(rows: dict, columns, best: int = 3) -> str:
    """`27 post-hoc detector rows (<method>+<detector>, in the full table); best AUROC: ...`."""
    detectors = {key: values for key, values in rows.items() if "+" in key[1]}
    auroc = next((i for i, (key, _, _) in enumerate(columns) if key == "auroc"), None)
    if not detectors:
        return ""
    line = f"{len(detectors)} post-hoc detector rows (`<method>+<detector>`, in the full table)"
    scored = sorted(((values[auroc][0], trial, method) for (trial, method), values in detectors.items()
                     if auroc is not None and values[auroc][0] is not None), reverse=True)
    if scored:
        line += f"; best {columns[auroc][2]}: " + ", ".join(
            f"{method} [{trial}] {100 * value:.1f}" for value, trial, method in scored[:best])
    return line


def _pivot(table: pd.DataFrame, columns) -> dict:
    """(trial, method) -> [(value or None, significant) per column], in table order."""
    trial_col = "trial" if "trial" in table else "run"
    out: dict = {}
    for row in table.to_dict("records"):
        key = (str(row[trial_col]), str(row["method"]))
        values = out.setdefault(key, [(None, False)] * len(columns))
        for i, (metric, unknown_set, _) in enumerate(columns):
            if unknown_set is not None and str(row["unknown_set"]) != unknown_set:
                continue
            value = row.get(metric)
            if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
                continue
            sig = row.get(f"{metric}_diff_sig")
            values[i] = (float(value), sig is not None and sig is not pd.NA and bool(sig))
    return out


# --------------------------------------------------------------------------------------------
# the saved view and the addresses


def runs_url(experiment_id: str, *, base: str = LOCAL_UI, view: bool = True) -> str:
    """The experiment's runs in MLflow's classic view (3.17 otherwise opens its GenAI view), with
    `view` the saved view that compares the methods (base '': a link inside the UI)."""
    url = f"{_root(base)}/experiments/{experiment_id}/runs?workflowType=machine_learning"
    return url + (f"&viewStateShareKey={VIEW_KEY}" if view else "")


def run_url(experiment_id: str, run_id: str, *, base: str = LOCAL_UI, artifact: str | None = None) -> str:
    """A run's page, or with `artifact` one of its artifacts (base '': a link inside the UI)."""
    tail = f"/artifacts/{artifact}" if artifact else ""
    return f"{_root(base)}/experiments/{experiment_id}/runs/{run_id}{tail}?workflowType=machine_learning"


def _root(base: str) -> str:
    return f"{base}/#" if base else "#"


def view_state(keys: Sequence[tuple[str, str]], *, num_runs: int) -> dict:
    """The saved view's UI state: the method runs (not the detector rows) sorted by the first
    metric, `keys` ((MLflow metric name, label), AUROC and top-1 first) as columns and as bar
    charts, every run shown."""
    stamp = int(time.time() * 1000)
    section = f"{stamp}dearraymethods"
    columns = [f"metrics.`{key}`" for key, _ in keys]  # in this order, beside the run names
    charts = [{"uuid": f"{stamp}dearray{i}", "type": "BAR", "runsCountToCompare": num_runs,
               "metricSectionId": section, "deleted": False, "isGenerated": False,
               "displayName": label, "metricKey": key}
              for i, (key, label) in enumerate(keys)]
    return {
        "searchFilter": f"tags.{METHOD_KIND_TAG} != 'detector'",
        "orderByKey": f"metrics.`{keys[0][0]}`", "orderByAsc": False,
        "startTime": "ALL", "lifecycleFilter": "Active", "datasetsFilter": [],
        "modelVersionFilter": "All Runs",
        "selectedColumns": columns, "columnOrder": columns, "columnWidths": {},
        "runsHiddenMode": "SHOW_ALL",
        "compareRunCharts": charts,
        "compareRunSections": [{"uuid": section, "name": VIEW_NAME, "display": True,
                                "isReordered": False, "deleted": False, "isGenerated": False}],
        "viewMaximized": False, "runListHidden": False, "isAccordionReordered": False,
        "useGroupedValuesInCharts": True, "hideEmptyCharts": True, "groupBy": None,
        "groupsExpanded": {},
        "globalLineChartConfig": {"xAxisKey": "step", "lineSmoothness": 0, "selectedXAxisMetricKey": ""},
    }


def publish_view(client: MlflowClient, experiment_id: str, keys: Sequence[tuple[str, str]], *,
                 num_runs: int) -> None:
    """Write (or replace) the saved view `VIEW_NAME` of the experiment (`view_state`)."""
    now = int(time.time() * 1000)
    envelope = {"name": VIEW_NAME, "createdAt": now, "updatedAt": now,
                "state": json.dumps(view_state(keys, num_runs=num_runs))}
    client.set_experiment_tag(experiment_id, VIEW_TAG_PREFIX + VIEW_KEY, json.dumps(envelope))


__all__ = ["COLOR_TAG", "METHOD_KIND_TAG", "NOTE_TAG", "PALETTE", "VIEW_KEY", "method_colors",
           "method_kind", "method_note", "publish_view", "run_url", "runs_url", "short_table",
           "view_state"]
