"""What a person reads in the terminal: the one-line failure cause, narrow results tables."""

from __future__ import annotations

import pandas as pd

from dear_ray.tracking.console import MAX_WIDTH, error_summary, format_results_table


class _WorkerGroupError(Exception):
    """Shaped like Ray Train's: the workers' own errors by rank."""

    def __init__(self, message: str, worker_failures: dict) -> None:
        super().__init__(message)
        self.worker_failures = worker_failures


def test_error_summary_is_the_first_line_of_the_original_error():
    bad = RuntimeError("32 of 600 videos in train could not be decoded (5.3%; max 5%); first "
                       "bad files:\n  a.mp4: cannot open\n  b.mp4: cannot open\n  ... and 27 more")
    wrapped = _WorkerGroupError("Training failed due to worker errors:\n[Rank 1]\nTraceback ...",
                                {1: ValueError("rank 1 too"), 0: bad})
    # the cause, not the last line of the message, nor the wrapper's text
    assert error_summary(wrapped) == ("RuntimeError: 32 of 600 videos in train could not be "
                                      "decoded (5.3%; max 5%)")
    chained = KeyError("k")
    try:
        try:
            raise chained
        except KeyError as err:
            raise RuntimeError("while loading") from err
    except RuntimeError as outer:
        assert error_summary(outer) == "KeyError: 'k'"
    # a Ray traceback text that could not be unwrapped: its last line is the original error
    remote = RuntimeError("\x1b[36mray::ImplicitFunc.train()\x1b[39m\n  File \"x.py\", line 3\n"
                          "ValueError: boom x=3")
    assert error_summary(remote) == "ValueError: boom x=3"


def _demo_like_table(rows: int = 13) -> pd.DataFrame:
    metrics = ["closed_top1", "shifted_top1", "static_bias_gap", "scuba_top1", "scufo_top1",
               "contrast_acc", "auroc", "open_maf1", "binarized_auc", "fpr_at_95_tpr_first", "ece"]
    data = {"trial": [f"trial_{i}" for i in range(rows)],
            "method": ["softmax+mahalanobis"] * rows, "unknown_set": "unknown"}
    for m in metrics:
        data[m] = 0.955
        data[f"{m}_ci_low"] = 0.925
        data[f"{m}_ci_high"] = 0.98
        data[f"{m}_diff_sig"] = pd.array([True] * rows, dtype="boolean")
    return pd.DataFrame(data), ["trial", "method", *metrics]


def test_a_wide_table_drops_its_intervals_then_wraps_its_headers():
    table, columns = _demo_like_table()
    text = format_results_table(table, columns)
    lines = text.splitlines()
    # 13 columns: 140 characters at most instead of 280 (every cell `95.5 [92.5, 98.0] *`)
    assert max(len(line) for line in lines) <= 140, max(len(line) for line in lines)
    wide = format_results_table(table, columns, max_width=10_000)
    assert max(len(line) for line in wide.splitlines()) > 2 * MAX_WIDTH
    assert "[92.5, 98.0]" not in text and "95.5 *" in text
    assert "95% intervals: the report's results.md" in text
    # headers wrapped at `_` over two lines: `fpr_at_95` above `tpr_first`
    assert lines[0].split()[-2:] == ["fpr_at_95", "ece"] and lines[1].split()[-1] == "tpr_first"
    assert lines[1].split()[0] == "top1" and set(lines[2]) == {"-", " "}
    # a narrow table keeps its intervals and one header line
    narrow = format_results_table(table, ["method", "auroc"])
    assert "95.5 [92.5, 98.0] *" in narrow and narrow.splitlines()[0].split() == ["method", "auroc"]
