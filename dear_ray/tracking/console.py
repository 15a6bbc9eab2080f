"""The results table as a person reads it in a terminal: `value [low, high]` in percent.

`format_results_table(table, columns)` takes `report_sweep`'s table (or `seed_summary`'s, which has
the same column names) and prints each metric M as `M [M_ci_low, M_ci_high]` in percent with one
decimal, a `*` where `M_diff_sig` is true (the paired difference to the softmax baseline on the same
videos, or over the same seeds, excludes 0), and a legend of which direction is better. The
static-bias columns (`OPTIONAL_COLUMNS`: `scuba_top1`, `scufo_top1`, `contrast_acc`) are left out
when no row has a value (a sweep without SCUBA / SCUFO stores). A table wider than `MAX_WIDTH`
characters drops the intervals (the legend says where they are), then wraps its headers at `_`.

`error_summary(err)` is the one line a failed run is reported by, on the console and in its MLflow
`error` tag: the original exception, dug out of Ray's wrappers, and the first line of its message.
"""

from __future__ import annotations

import math
import re
import textwrap

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
MAX_WIDTH = 120  # characters: a table wider than this drops its intervals, then wraps its headers
HEADER_WIDTH = 9  # a wrapped header's lines are at least this wide: `fpr_at_95` / `tpr_first`
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_TRACEBACK_LINE = re.compile(r'File ".*", line \d+')


def _number(value) -> float | None:
    if value is None or value is pd.NA:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(number) else number


def format_cell(row: pd.Series, column: str, *, intervals: bool = True) -> str:
    """One cell: a metric as `88.5 [84.0, 92.1]` (percent; `88.5` without `intervals`),
    `threshold` with 4 significant digits, anything else as text; `-` for a missing value."""
    value = row.get(column)
    if column in HIGHER_IS_BETTER or column in LOWER_IS_BETTER:
        number = _number(value)
        if number is None:
            return "-"
        text = f"{100 * number:.1f}"
        low, high = _number(row.get(f"{column}_ci_low")), _number(row.get(f"{column}_ci_high"))
        if intervals and low is not None and high is not None:
            text += f" [{100 * low:.1f}, {100 * high:.1f}]"
        sig = row.get(f"{column}_diff_sig")
        if sig is not None and sig is not pd.NA and bool(sig):
            text += f" {SIGNIFICANT_MARK}"
        return text
    number = _number(value) if column == "threshold" else None
    if number is not None:
        return f"{number:.4g}"
    return "-" if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)) else str(value)


def format_results_table(table: pd.DataFrame | None, columns: list[str] | None = None, *,
                         max_width: int = MAX_WIDTH) -> str:
    """A plain-text table of `columns` (default: every column without an interval suffix) with
    intervals, significance marks and a legend.

    Args:
        table: the results table (one row per method and unknown set).
        columns: the columns to print, in order; names missing from the table are skipped, and so
            are `OPTIONAL_COLUMNS` without a value in any row.
        max_width: a table wider than this prints its metrics without their intervals, and if it
            is still wider, with its headers wrapped at `_` over several lines.
    """
    if table is None or table.empty:
        return "(no results: no trial left score stores)"
    if columns is None:
        columns = [c for c in table.columns if not c.endswith(("_ci_low", "_ci_high", "_diff_sig"))]
    cols = [c for c in columns if c in table.columns
            and not (c in OPTIONAL_COLUMNS and all(_number(v) is None for v in table[c]))]
    numeric = [c in HIGHER_IS_BETTER or c in LOWER_IS_BETTER or c == "threshold" for c in cols]
    higher = [c for c in cols if c in HIGHER_IS_BETTER]
    lower = [c for c in cols if c in LOWER_IS_BETTER]
    has_ci = any(f"{c}_ci_low" in table.columns and table[f"{c}_ci_low"].notna().any()
                 for c in higher + lower)
    intervals = has_ci
    lines = _text_table(table, cols, numeric, intervals=has_ci, wrap=False)
    if max(map(len, lines)) > max_width and has_ci:
        intervals = False
        lines = _text_table(table, cols, numeric, intervals=False, wrap=False)
    if max(map(len, lines)) > max_width:
        lines = _text_table(table, cols, numeric, intervals=False, wrap=True)
    legend = ["metrics in percent" + (", value [95% interval]" if intervals else "")
              + ("; threshold in the score's units" if "threshold" in cols else "")]
    if has_ci and not intervals:
        legend[0] += ("; 95% intervals: the report's results.md / .csv, MLflow's "
                      "<metric>_ci_low / _ci_high")
    if higher:
        legend.append("higher is better: " + ", ".join(higher))
    if lower:
        legend.append("lower is better: " + ", ".join(lower))
    if any(f"{c}_diff_sig" in table.columns for c in higher + lower):
        legend.append(f"{SIGNIFICANT_MARK} the difference to softmax on the same videos (or seeds) lies outside "
                      "its 95% interval\n  (paired bootstrap; t-interval over seeds)")
    return "\n".join(lines + [""] + legend)


def _text_table(table: pd.DataFrame, cols: list[str], numeric: list[bool], *, intervals: bool,
                wrap: bool) -> list[str]:
    """The header line(s), the rule and one line per row; `wrap`: headers longer than their
    column's widest cell are split at `_` over several lines."""
    cells = [[format_cell(row, c, intervals=intervals) for c in cols] for _, row in table.iterrows()]
    widest = [max((len(r[i]) for r in cells), default=1) for i in range(len(cols))]
    if wrap:
        heads = [_wrap_header(c, max(w, HEADER_WIDTH)) for c, w in zip(cols, widest, strict=True)]
    else:
        heads = [[c] for c in cols]
    widths = [max(w, *(len(h) for h in head)) for w, head in zip(widest, heads, strict=True)]

    def line(values: list[str]) -> str:
        return "  ".join(v.rjust(w) if num else v.ljust(w)
                         for v, w, num in zip(values, widths, numeric, strict=True)).rstrip()

    depth = max(len(h) for h in heads)
    header = [line([h[i] if i < len(h) else "" for h in heads]) for i in range(depth)]
    return header + [line(["-" * w for w in widths]), *(line(r) for r in cells)]


def _wrap_header(name: str, width: int) -> list[str]:
    """`name` split at `_` into lines of at most `width` characters where its parts allow
    (`fpr_at_95_tpr_first` over 9 columns: `fpr_at_95`, `tpr_first`)."""
    parts = name.split("_")
    out = [parts[0]]
    for part in parts[1:]:
        if len(out[-1]) + 1 + len(part) <= width:
            out[-1] += "_" + part
        else:
            out.append(part)
    return out


def error_summary(err: BaseException) -> str:
    """One line naming why a run failed: `TooManyBadVideosError: 32 of 600 videos in train could
    not be decoded (5.3%; max_bad_fraction=5.0%)`.

    The original exception is found under Ray's wrappers (a Ray Train `WorkerGroupError`'s
    `worker_failures`, a `ControllerError`'s `controller_failure`, a `RayTaskError`'s `cause`, or
    `__cause__`); its message's first line is kept, without a trailing clause that introduces
    the details below it (`...; first bad files:`) and without terminal colour codes. A Ray
    traceback text that could not be unwrapped gives its last line, the original exception's.
    """
    err = root_cause(err)
    text = _ANSI.sub("", str(err)).strip()
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines:
        return type(err).__name__
    if any(_TRACEBACK_LINE.match(line) for line in lines):
        return lines[-1]
    first = lines[0]
    if first.endswith(":") and len(lines) > 1:
        head, sep, _ = first.rpartition("; ")
        first = head if sep else first.rstrip(":")
    return textwrap.shorten(f"{type(err).__name__}: {first}", width=500, placeholder=" ...")


def root_cause(err: BaseException) -> BaseException:
    """The innermost exception under Ray's wrappers and `raise ... from` chains (see
    `error_summary`)."""
    seen = set()
    while id(err) not in seen:
        seen.add(id(err))
        failures = getattr(err, "worker_failures", None)
        inner = None
        if isinstance(failures, dict) and failures:
            inner = failures[min(failures)]  # the lowest rank's error
        for attr in ("controller_failure", "cause", "__cause__"):
            if inner is None:
                candidate = getattr(err, attr, None)
                inner = candidate if isinstance(candidate, BaseException) else None
        if inner is None:
            break
        err = inner
    return err


EPOCH_FIELDS = (("train_loss", "loss {:.3f}"), ("train_top1", "top-1 {:.1%}"), ("val_top1", "val {:.1%}"),
                ("test_top1", "test {:.1%}"), ("clips_per_s", "{:.0f} clips/s"))


def epoch_line(name: str, metrics: dict, total: int) -> str:
    """`[name] epoch 3/12  loss 0.412  top-1 88.1%  val 80.0%  203 clips/s` from one epoch's
    metrics (`epoch` counts from 0; fields without a value are left out)."""
    parts = [f"[{name}] epoch {int(metrics['epoch']) + 1}/{total}"]
    for key, fmt in EPOCH_FIELDS:
        if isinstance(metrics.get(key), (int, float)):
            parts.append(fmt.format(metrics[key]))
    return "  ".join(parts)


class EpochLines:
    """Prints `epoch_line` for each epoch a run logs to MLflow, from a thread of this process.

    `dear-ray train` uses it instead of forwarding the Ray Train workers' output to the console
    (which brings Ray's own log lines and reports with it): rank 0 logs every epoch's metrics
    into the run, wherever it runs, and this polls the run (found by name in `experiment`) every
    `interval` seconds, printing the epochs logged after it started. `stop()` prints what is
    left and ends the thread.
    """

    def __init__(self, tracking_uri: str, experiment: str, run_name: str, total: int, *,
                 interval: float = 1.0) -> None:
        import threading
        import time

        self._args = (tracking_uri, experiment, run_name)
        self._total = total
        self._interval = interval
        self._since = int(time.time() * 1000) - 1000
        self._printed: set[int] = set()
        self._run_id: str | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="epoch-lines", daemon=True)

    def start(self) -> EpochLines:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)
        self._poll()

    def _loop(self) -> None:
        while not self._stop.wait(self._interval):
            self._poll()

    def _poll(self) -> None:
        from mlflow import MlflowClient

        from dear_ray.tracking.mlflow_runs import find_run

        uri, experiment, run_name = self._args
        try:
            client = MlflowClient(uri)
            if self._run_id is None:
                exp = client.get_experiment_by_name(experiment)
                self._run_id = exp and find_run(uri, exp.experiment_id, run_name=run_name)
                if self._run_id is None:
                    return
            new = sorted({int(m.step) for m in client.get_metric_history(self._run_id, "epoch")
                          if m.timestamp >= self._since} - self._printed)
            if not new:
                return
            history = {key: {int(m.step): m.value for m in client.get_metric_history(self._run_id, key)}
                       for key, _ in EPOCH_FIELDS}
        except Exception:  # noqa: BLE001 - a busy or not yet created store: the next poll retries
            return
        for step in new:
            metrics = {"epoch": step, **{k: v[step] for k, v in history.items() if step in v}}
            print(epoch_line(run_name, metrics, self._total), flush=True)
            self._printed.add(step)
