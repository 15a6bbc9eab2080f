"""The literature tables: imported released scores evaluated under each paper's protocol, beside
the published numbers (docs/importing.md).

`evaluate_model` is the one evaluation of an imported model (known test store + unknown store)
under `dear` or `psl` (`dear_ray.metrics.protocols`), with the released quirks by default:
DEAR's threshold as typed on its command line, its `np.random` subset stream when a table asks
for it, PSL's HMDB-51 overlap removal and its MiT-v2 slices. `literature_frame` fills every
table of a `LiteratureSpec` with our value, the published one and the difference (percent), and
`cross_protocol_frame` puts every model under both protocols side by side. Values are percent
here (the papers' unit), unlike the fractions of `results.csv`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
import pandas as pd

from dear_ray.metrics.openset import draw_dear_stream_subsets, draw_unknown_subsets
from dear_ray.metrics.protocols import PSL_MIT_KNOWN_ROWS, psl_metrics, psl_slices, psl_unknown
from dear_ray.metrics.report import open_set_report
from dear_ray.metrics.literature_spec import LiteratureSpec, Table
from dear_ray.scores import ScoreStore

PROTOCOL_TITLES = {
    "dear": "DEAR's protocol: every unknown class, the method's released threshold, open maF1 over "
            "10 class subsets per openness point (compare_openness.py)",
    "psl": "PSL's protocol: HMDB-51 without its 8 UCF-101 classes, MiT-v2 as the mean of 10 slices "
           "(compare_openness_new_*.py)",
}
CROSS_METRICS = {"auroc": "AUROC", "aupr_out_trapz": "AUPR", "fpr_at_95_tpr_nearest": "FPR@95",
                 "binarized_auc": "AUROC at threshold", "open_maf1": "Open maF1", "closed_top1": "Closed acc"}
ImportedPair = tuple[ScoreStore, ScoreStore]  # (known test store, unknown store)


def evaluate_model(known: ScoreStore, unknown: ScoreStore, protocol: str, *, subsets: str = "shared",
                   position: int = 0, num_trials: int = 10, seed: int = 0,
                   mit_known_rows: int | None = PSL_MIT_KNOWN_ROWS) -> dict[str, float]:
    """An imported model's metrics (fractions) on one unknown set under `protocol`.

    Args:
        known, unknown: its known test store and unknown store (no training store: the threshold
            is the one imported with them, `StoreMeta.threshold`).
        protocol: `dear` or `psl`.
        subsets: `shared` (`draw_unknown_subsets` with `seed`) or `dear_stream` (DEAR's stream at
            `position`, `draw_dear_stream_subsets`).
        num_trials: subsets per openness point.
        mit_known_rows: PSL's MiT-v2 known block (`psl_slices`).
    """
    score = known.meta.extra.get("score") or sorted(known.scores)[0]
    if protocol == "psl":
        unknown = psl_unknown(unknown)
    if subsets == "dear_stream":
        drawn = draw_dear_stream_subsets(int(unknown.labels.max()) + 1, num_trials=num_trials, position=position)
    else:
        drawn = draw_unknown_subsets(unknown.labels, num_trials=num_trials, seed=seed)
    report = open_set_report(train=None, known=known, unknown=unknown, score=score, subsets=drawn)
    if protocol == "psl":
        slices = psl_slices(report.known_ids, report.unknown_ids, unknown.meta.dataset, mit_known_rows=mit_known_rows)
        return psl_metrics(report, slices)
    return dict(report.metrics)


def reproduced(ours: float, published: float, table: Table) -> bool | None:
    """Whether our value (percent) reproduces the published one under the table's rule; None
    when either is missing."""
    if math.isnan(ours) or math.isnan(published):
        return None
    if table.decimals is not None:
        return f"{ours:.{table.decimals}f}" == f"{published:.{table.decimals}f}"
    return abs(ours - published) <= table.tolerance + 1e-9


class _Cache:
    """Each (model, protocol, subsets, position) evaluated once."""

    def __init__(self, models: Mapping[str, ImportedPair | str], **options) -> None:
        self.models, self.options, self.done = models, options, {}

    def get(self, model: str, protocol: str, subsets: str = "shared", position: int = 0) -> dict[str, float] | None:
        pair = self.models[model]
        if isinstance(pair, str):
            return None
        key = (model, protocol, subsets, position if subsets == "dear_stream" else 0)
        if key not in self.done:
            self.done[key] = evaluate_model(*pair, protocol, subsets=subsets, position=position, **self.options)
        return self.done[key]


def literature_frame(spec: LiteratureSpec, models: Mapping[str, ImportedPair | str], *, num_trials: int = 10,
                     seed: int = 0, mit_known_rows: int | None = PSL_MIT_KNOWN_ROWS) -> pd.DataFrame:
    """Every published number of the spec's tables beside ours, one row per (table, row, metric).

    Args:
        spec: the literature spec.
        models: model id -> its imported (known, unknown) stores, or a note why it has none
            (`file absent: ...`).

    Returns:
        Columns `table` (index), `title`, `protocol`, `label`, `model`, `method`, `unknown_set`,
        `metric`, `header`, `ours`, `published`, `diff` (ours - published), `reproduced`
        (boolean, NA without a value) and `note`; values in percent.
    """
    cache = _Cache(models, num_trials=num_trials, seed=seed, mit_known_rows=mit_known_rows)
    records = []
    for index, table in enumerate(spec.tables):
        for row in table.rows:
            entry = spec.models[row.model]
            values = cache.get(row.model, table.protocol, table.subsets, row.stream_position)
            note = models[row.model] if values is None else ""
            for key, header in table.columns.items():
                ours = 100 * values[key] if values is not None else float("nan")
                published = row.published.get(key, float("nan"))
                records.append({"table": index, "title": table.title, "protocol": table.protocol,
                                "label": row.label, "model": row.model, "method": entry.method,
                                "unknown_set": entry.unknown_set, "metric": key, "header": header, "ours": ours,
                                "published": published, "diff": ours - published,
                                "reproduced": reproduced(ours, published, table), "note": note})
    frame = pd.DataFrame(records)
    frame["reproduced"] = frame["reproduced"].astype("boolean")
    return frame


def cross_protocol_frame(spec: LiteratureSpec, models: Mapping[str, ImportedPair | str], *,
                         num_trials: int = 10, seed: int = 0,
                         mit_known_rows: int | None = PSL_MIT_KNOWN_ROWS) -> pd.DataFrame:
    """Every model with a file under both protocols: `<metric>_dear`, `<metric>_psl` and
    `<metric>_diff` (psl - dear) for `CROSS_METRICS`, percent; DEAR's protocol with the shared
    subsets (seed `seed`)."""
    cache = _Cache(models, num_trials=num_trials, seed=seed, mit_known_rows=mit_known_rows)
    records = []
    for model, entry in spec.models.items():
        dear, psl = cache.get(model, "dear"), cache.get(model, "psl")
        if dear is None:
            continue
        record = {"model": model, "method": entry.method, "unknown_set": entry.unknown_set,
                  "threshold": dear["threshold"], "psl_threshold": psl["threshold"]}
        for key in CROSS_METRICS:
            record[f"{key}_dear"], record[f"{key}_psl"] = 100 * dear[key], 100 * psl[key]
            record[f"{key}_diff"] = record[f"{key}_psl"] - record[f"{key}_dear"]
        records.append(record)
    return pd.DataFrame(records)


def _number(value: float, digits: int, sign: bool = False) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    value = value if round(value, digits) != 0 else 0.0  # no "-0.000"
    return f"{value:+.{digits}f}" if sign else f"{value:.{digits}f}"


def _grid(header: list[str], rows: list[list[str]], markdown: bool) -> list[str]:
    if markdown:
        return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)] + \
            ["| " + " | ".join(r) + " |" for r in rows]
    widths = [max(len(c) for c in col) for col in zip(header, *rows, strict=True)]
    line = lambda cells: "  ".join(c.ljust(w) if i == 0 else c.rjust(w)  # noqa: E731
                                   for i, (c, w) in enumerate(zip(cells, widths, strict=True)))
    return [line(header), "-" * len(line(header))] + [line(r) for r in rows]


def format_table(frame: pd.DataFrame, table: Table, *, markdown: bool = False) -> str:
    """One published table: per metric ours, the published value and the difference (percent),
    the protocol in the title, then how many numbers reproduce and the rows without a file."""
    digits = table.decimals if table.decimals is not None else 2
    header = ["method"]
    for name in table.columns.values():
        header += [name, "paper", "diff"]
    rows, notes = [], []
    for label, part in frame.groupby("label", sort=False):
        cells = [str(label)]
        for item in part.itertuples():
            cells += [_number(item.ours, digits), _number(item.published, digits),
                      _number(item.diff, digits, sign=True)]
        rows.append(cells)
        if part["note"].iloc[0]:
            notes.append(f"{label}: {part['note'].iloc[0]}")
    checked = frame["reproduced"].dropna()
    rule = f"to {table.decimals} decimals" if table.decimals is not None else f"within {table.tolerance:g}"
    title = f"{table.title} [{PROTOCOL_TITLES[table.protocol]}]"
    lines = [f"### {title}" if markdown else title]
    if table.source:
        lines.append(f"published: {table.source}")
    if table.protocol == "dear":
        subsets = ("DEAR's np.random stream (seed 123, each row at its stream position)"
                   if table.subsets == "dear_stream" else "the same seeded subsets for every row")
        lines.append(f"thresholds: as imported (the released command line); class subsets: {subsets}")
    lines += ([""] if markdown else []) + _grid(header, rows, markdown) + ([""] if markdown else [])
    missed = frame[~frame["reproduced"].fillna(True).astype(bool)]
    lines.append(f"reproduced {rule} (percent): {int(checked.sum())} of {len(checked)} published numbers"
                 + ("" if missed.empty else "; NOT reproduced: "
                    + ", ".join(f"{r.label} {r.header}" for r in missed.itertuples())))
    lines += [f"{'- ' if markdown else '  '}{n}" for n in notes]
    return "\n".join(lines)


CROSS_BLOCKS = (
    ("threshold-free", ("auroc", "aupr_out_trapz", "fpr_at_95_tpr_nearest")),
    ("at the threshold", ("binarized_auc", "open_maf1", "closed_top1")),
)


def format_cross(cross: pd.DataFrame, *, markdown: bool = False) -> str:
    """The cross-protocol tables (threshold-free metrics, then those at the threshold): per
    metric DEAR's protocol, PSL's, and PSL's minus DEAR's."""
    title = ("Cross-protocol: every model under DEAR's protocol (every class, every video, the released "
             "threshold; shared subsets) and PSL's (HMDB-51 without the UCF-101 classes, MiT-v2 over 10 "
             "slices; DEAR's threshold, else the 85% cut of the known test scores)")
    lines = [f"### {title}" if markdown else title]
    for name, keys in CROSS_BLOCKS:
        header = ["model", "unknown"]
        for key in keys:
            header += [f"{CROSS_METRICS[key]} DEAR", "PSL", "diff"]
        rows = []
        for record in cross.to_dict("records"):
            cells = [str(record["model"]), str(record["unknown_set"])]
            for key in keys:
                cells += [_number(record[f"{key}_dear"], 2), _number(record[f"{key}_psl"], 2),
                          _number(record[f"{key}_diff"], 2, sign=True)]
            rows.append(cells)
        lines += ["", f"{name} (percent):", *_grid(header, rows, markdown)]
    lines.append("('-': not defined under that protocol: open maF1 is DEAR's alone; DEAR's protocol needs the "
                 "threshold a file imported without one lacks)")
    return "\n".join(lines)


def summary(frame: pd.DataFrame) -> dict[str, float]:
    """Counts and the largest difference per table, for the report's parent run."""
    out = {}
    checked = frame.dropna(subset=["reproduced"])
    out["published_numbers"] = float(len(checked))
    out["reproduced_numbers"] = float(checked["reproduced"].sum())
    for index, part in frame.groupby("table"):
        diffs = part["diff"].abs().dropna()
        if len(diffs):
            out[f"table{index}/max_abs_diff"] = float(np.max(diffs))
    return out
