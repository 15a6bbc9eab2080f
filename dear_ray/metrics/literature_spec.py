"""The literature report spec (`jobs/literature/*.yaml`, docs/importing.md): which released score
files make which published table, and the published numbers.

    literature: tsm_ucf101            # the report's name (marks the file as a literature spec)
    known_set: ucf101
    backbone: tsm_r50
    models:                           # one released score file each, relative to --root
      dear_hmdb: {file: results/TSM_..._HMDB_result.npz, method: dear, unknown_set: hmdb51,
                  threshold: 0.004549}
    tables:
      - title: DEAR model zoo, TSM + DEAR
        source: DEAR README, Model Zoo
        protocol: dear                # dear | psl
        subsets: dear_stream          # dear only: shared | dear_stream
        tolerance: 0.1                # |ours - published| <= tolerance (percent), or
        decimals: 3                   # ours printed with 3 decimals equals the published print
        columns: {open_maf1: Open maF1, binarized_auc: Open-set AUC, closed_top1: Closed-set acc}
        rows:
          - {label: DEAR (HMDB-51), model: dear_hmdb, stream_position: 2,
             published: {open_maf1: 84.69, binarized_auc: 78.65, closed_top1: 94.48}}

Top-level keys starting with `x-` are ignored (they hold YAML anchors the tables share).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from dear_ray.metrics.report import METRIC_KEYS

LITERATURE_KEY = "literature"


class _Strict(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ModelEntry(_Strict):
    """One released score file: `dear-ray scores import` options."""

    file: str
    method: str
    unknown_set: str
    threshold: float | None = None
    layout: Literal["auto", "unctt", "softmax", "openmax"] = "auto"
    column: int = Field(0, ge=0)


class Row(_Strict):
    """One row of a published table: a model and its published numbers (percent)."""

    label: str
    model: str
    published: dict[str, float] = {}
    stream_position: int = Field(0, ge=0)


class Table(_Strict):
    """One published table: the protocol it was computed under and its rows."""

    title: str
    source: str = ""
    protocol: Literal["dear", "psl"]
    subsets: Literal["shared", "dear_stream"] = "shared"
    tolerance: float | None = Field(None, gt=0)
    decimals: int | None = Field(None, ge=0)
    columns: dict[str, str]
    rows: list[Row]

    @model_validator(mode="after")
    def _check(self) -> Table:
        if (self.tolerance is None) == (self.decimals is None):
            raise ValueError("give exactly one of tolerance (percent) and decimals")
        bad = [c for c in self.columns if c not in METRIC_KEYS]
        if bad:
            raise ValueError(f"columns {bad} are not metrics; expected some of {', '.join(METRIC_KEYS)}")
        for row in self.rows:
            extra = sorted(set(row.published) - set(self.columns))
            if extra:
                raise ValueError(f"row {row.label!r}: published {extra} are not columns of the table")
        return self


class LiteratureSpec(_Strict):
    """A literature report: the released files and the tables they reproduce."""

    literature: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    description: str = ""
    known_set: str = "ucf101"
    backbone: str = ""
    root_hint: str = ""
    models: dict[str, ModelEntry]
    tables: list[Table]
    cross_protocol: bool = True

    @model_validator(mode="after")
    def _rows_name_models(self) -> LiteratureSpec:
        for table in self.tables:
            for row in table.rows:
                if row.model not in self.models:
                    raise ValueError(f"table {table.title!r}, row {row.label!r}: model {row.model!r} is not "
                                     f"among the models ({', '.join(self.models)})")
        return self

    @property
    def name(self) -> str:
        return self.literature


def is_literature_spec(path: str | Path) -> bool:
    """Whether a YAML file is a literature spec (has the top-level `literature` key)."""
    try:
        raw = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError):
        return False
    return isinstance(raw, dict) and LITERATURE_KEY in raw


def load_literature_spec(path: str | Path) -> LiteratureSpec:
    """Read and validate a spec; an error is one line naming the file and the field."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except OSError as err:
        raise ValueError(f"{path}: cannot read the literature spec: {err}") from None
    except yaml.YAMLError as err:
        raise ValueError(f"{path}: not valid YAML: {err}") from None
    if isinstance(raw, dict):  # `x-*` keys hold YAML anchors shared by the tables
        raw = {k: v for k, v in raw.items() if not str(k).startswith("x-")}
    try:
        return LiteratureSpec.model_validate(raw)
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "top level"
        raise ValueError(f"{path}: {where}: {first['msg']}"
                         + (f" ({err.error_count() - 1} more)" if err.error_count() > 1 else "")) from None
