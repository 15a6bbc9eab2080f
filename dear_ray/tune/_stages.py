"""The `stages` section of a sweep file: a pipeline of grids run in file order.

    stages:
      - name: pretrain
        base: {data: {data_root: data/synth_pretrain}, optim.epochs: 8}   # over the sweep's base
        cases: [{name: pretrain, model.head: softmax}]
      - name: finetune
        cases:
          - {name: softmax, model.pretrained: {from: pretrain/pretrain}}
          - {name: dear, model.head: dear, model.pretrained: {from: pretrain/pretrain}}

A stage has a `name`, a `grid` and/or `cases` (the syntax of a sweep's own), an optional `base`
(overrides of the sweep's base for this stage's trials, nested or dotted) and an optional
`max_concurrent_trials`. `model.pretrained: {from: <stage>/<trial>}` (in a case, a grid value or a
stage's base) starts a trial from the last checkpoint of a trial of an EARLIER stage; it is
resolved to that checkpoint's path when the stage starts (`dear_ray.tune.stage_runner`); `{axis}`
fields in it take the trial's grid values (`pretrain/p_seed-{seed}`). Trial
names are unique across the stages (they name the run folders). docs/sweeps.md.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from dear_ray.tune._sections import (
    SweepError,
    check_path,
    parse_cases,
    parse_grid,
    positive_int,
    slug,
)

STAGE_KEYS = {"name", "base", "grid", "cases", "max_concurrent_trials"}
#: The field whose `{from: <stage>/<trial>}` value names a trial's source.
SOURCE_FIELD = "model.pretrained"


@dataclass(frozen=True)
class StageSpec:
    """One stage: its trials' base (`ExperimentConfig`: the sweep's base with the stage's
    overrides), grid and cases; `source` is the `from` its base gives every trial."""

    name: str
    base: Any
    grid: dict[str, list[Any]]
    cases: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    source: str | None = None
    max_concurrent_trials: int | None = None
    overrides: Mapping[str, Any] | None = None  # the stage's `base` as written


def rebase_stage(stage: StageSpec, base: Any, src: str, index: int) -> StageSpec:
    """`stage` over another sweep base (`--set`): the stage's own overrides still win."""
    from dataclasses import replace

    stage_base, _ = _stage_base(stage.overrides, f"{src}: stages[{index}] ({stage.name})", base)
    return replace(stage, base=stage_base)


def is_source(value: Any) -> bool:
    """A `{from: ...}` mapping (as opposed to a checkpoint path)."""
    return isinstance(value, Mapping) and "from" in value


def source_of(value: Any, where: str) -> str:
    """The `<stage>/<trial>` of a `{from: <stage>/<trial>}` value.

    Raises:
        SweepError: naming `where` and the field when the mapping is malformed.
    """
    ref = value.get("from") if isinstance(value, Mapping) else None
    if set(value) != {"from"} or not isinstance(ref, str) or ref.count("/") != 1 \
            or not all(ref.split("/")):
        raise SweepError(f"{where}: {SOURCE_FIELD}: expected {{from: <stage>/<trial>}}, "
                         f"got {dict(value)!r}")
    return ref


def pop_source(overrides: dict[str, Any], where: str) -> tuple[dict[str, Any], str | None]:
    """`overrides` without a `{from: ...}` value of `model.pretrained`, and that source."""
    value = overrides.get(SOURCE_FIELD)
    if not is_source(value):
        return overrides, None
    rest = {k: v for k, v in overrides.items() if k != SOURCE_FIELD}
    return rest, source_of(value, where)


def parse_stages(raw: Any, src: str, base: Any) -> tuple[StageSpec, ...]:
    """The `stages` list of a sweep file; `base` is the sweep's validated `ExperimentConfig`.

    Raises:
        SweepError: naming the file, `stages[i]`, the key and the value.
    """
    if not isinstance(raw, list) or not raw:
        raise SweepError(f"{src}: stages: expected a non-empty list of stages "
                         f"({{name, grid and/or cases, base}}), got {raw!r}")
    stages, names = [], set()
    for i, stage in enumerate(raw):
        where = f"{src}: stages[{i}]"
        if not isinstance(stage, Mapping):
            raise SweepError(f"{where}: expected a mapping, got {stage!r}")
        unknown = sorted(set(stage) - STAGE_KEYS)
        if unknown:
            raise SweepError(f"{where}: unknown key(s) {unknown}; allowed: {sorted(STAGE_KEYS)}")
        name = stage.get("name")
        if not isinstance(name, str) or not name or slug(name) != name or "/" in name:
            raise SweepError(f"{where}: name: expected letters, digits, '_', '.', '-', "
                             f"got {name!r}")
        if name in names:
            raise SweepError(f"{where}: name {name!r} is used by an earlier stage")
        names.add(name)
        where = f"{src}: stages[{i}] ({name})"
        stage_base, source = _stage_base(stage.get("base"), where, base)
        grid = parse_grid(stage.get("grid"), where, has_cases=bool(stage.get("cases")))
        limit = stage.get("max_concurrent_trials")
        stages.append(StageSpec(
            name=name, base=stage_base, grid=grid,
            cases=parse_cases(stage.get("cases"), where, grid), source=source,
            overrides=stage.get("base"),
            max_concurrent_trials=None if limit is None else positive_int(
                limit, where, "max_concurrent_trials")))
    return tuple(stages)


def _stage_base(raw: Any, where: str, base: Any) -> tuple[Any, str | None]:
    """The sweep's base with a stage's overrides: nested mappings merge into the base's (an
    empty mapping replaces), dotted keys apply after them."""
    if raw is None:
        return base, None
    if not isinstance(raw, Mapping):
        raise SweepError(f"{where}: base: expected a mapping of overrides of the sweep's base, "
                         f"got {raw!r}")
    nested = {k: v for k, v in raw.items() if "." not in str(k)}
    dotted = {k: v for k, v in raw.items() if "." in str(k)}
    for key in [*nested, *dotted]:
        check_path(key, where, "base")
    model = nested.get("model")
    if isinstance(model, Mapping) and is_source(model.get("pretrained")):
        nested = {**nested, "model": {k: v for k, v in model.items() if k != "pretrained"}}
        dotted = {**dotted, SOURCE_FIELD: model["pretrained"]}
    dotted, source = pop_source(dotted, f"{where}: base")
    merged = _merge(base.to_dict(sparse=True), nested)
    try:
        from dear_ray.config import load_config

        return load_config(merged, overrides=dotted or None), source
    except (ValueError, TypeError, KeyError) as err:
        raise SweepError(f"{where}: base: {err}") from err


def _merge(into: dict, extra: Mapping) -> dict:
    out = copy.deepcopy(into)
    for key, value in extra.items():
        if isinstance(value, Mapping) and value and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def check_sources(stages: tuple[StageSpec, ...], trials: dict[str, list[str]],
                  sources: dict[str, tuple[int, str]], src: str) -> None:
    """Every `from` names a trial of an earlier stage.

    Args:
        stages: the sweep's stages, in run order.
        trials: stage name -> its trial names.
        sources: trial name -> (the index of its stage, its `<stage>/<trial>` source).

    Raises:
        SweepError: naming the stage, the trial, the field and the bad reference.
    """
    order = {s.name: i for i, s in enumerate(stages)}
    for trial, (index, ref) in sources.items():
        stage = stages[index].name
        where = (f"{src}: stages[{index}] ({stage}), trial {trial!r}: "
                 f"{SOURCE_FIELD}.from {ref!r}")
        from_stage, from_trial = ref.split("/")
        if from_stage not in order:
            raise SweepError(f"{where}: no stage {from_stage!r}; the stages are {list(order)}")
        if order[from_stage] == index:
            raise SweepError(f"{where}: names a trial of its own stage; a trial starts from a "
                             "trial of an earlier stage")
        if order[from_stage] > index:
            raise SweepError(f"{where}: stage {from_stage!r} runs after stage {stage!r} (stages "
                             "run in file order); a trial starts from a trial of an earlier stage")
        if from_trial not in trials[from_stage]:
            raise SweepError(f"{where}: stage {from_stage!r} has no trial {from_trial!r}; its "
                             f"trials are {trials[from_stage]}")
