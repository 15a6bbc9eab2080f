"""A sweep's record of its trials, `<sweep_dir>/trials.json`: each trial's resolved config as it
was scheduled, what `--resume` compares the sweep's configs with (`changed_trials`) and what the
report's warnings about mixed settings read (`mixed_settings`)."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

from dear_ray.tune._sections import SweepError

TRIALS_FILE = "trials.json"


def read_trials_state(path: Path) -> dict[str, dict]:
    """Trial name -> its recorded resolved config; empty when the file does not exist.

    Raises:
        SweepError: the file cannot be read or parsed (naming it).
    """
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise SweepError(f"{path}: unreadable trial state ({err}); delete it to resume without "
                         "config checks") from err
    return {k: v for k, v in data.items() if isinstance(v, dict)}


def write_trials_state(path: Path, trials: dict[str, dict]) -> None:
    """Write the record atomically (a temporary file, then a rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(trials, indent=1, sort_keys=True))
    tmp.replace(path)


def format_changes(changed: dict[str, list[str]]) -> str:
    """`  <run>: <field>: <old> -> <new>; ...`, a line per run (`config_diff`'s lines)."""
    return "\n".join(f"  {name}: " + "; ".join(diff) for name, diff in changed.items())


def config_diff(old: Any, new: Any) -> list[str]:
    """Dotted fields whose values differ between two resolved experiment config dicts:
    `field: old -> new`; a field one config lacks while the other holds its default is no change
    (a config recorded before the field existed; `dear_ray.config.diff`)."""
    from dear_ray.config import ExperimentConfig
    from dear_ray.config.diff import config_diff as diff, field_defaults

    return diff(old, new, field_defaults(ExperimentConfig))


def with_source(config: dict, source: str | None, sweep_dir: Path) -> dict:
    """`config` with `model.pretrained` written as `<from stage/trial>` when it is the last
    checkpoint of the source trial (`<sweep_dir>/ray/<trial>/checkpoint_epoch_*`) or unset (a
    plan before its stage starts): so a trial's resolved checkpoint path is not a change, a
    different source is."""
    if not source:
        return config
    out = copy.deepcopy(config)
    model = out.setdefault("model", {})
    folder = (Path(sweep_dir) / "ray" / source.split("/")[1]).absolute()
    path = model.get("pretrained")
    if path is None or Path(path).parent == folder:
        model["pretrained"] = f"<from {source}>"
    return out


def changed_trials(plans: list, recorded: dict[str, dict], configs: dict[str, dict],
                   sweep_dir: Path) -> dict[str, list[str]]:
    """Trial name -> why it must train again: the fields of its resolved config that differ from
    the recorded ones (`config_diff`), or the source it starts from that changed (a changed trial
    invalidates every trial that starts from it, stage after stage).

    Args:
        plans: the sweep's `TrialPlan`s in run order.
        recorded: `trials.json`'s configs; configs: the sweep's resolved configs now.
    """
    changed: dict[str, list[str]] = {}
    for plan in plans:
        if plan.name not in recorded:
            continue
        diff = config_diff(with_source(recorded[plan.name], plan.source, sweep_dir),
                           with_source(configs[plan.name], plan.source, sweep_dir))
        if plan.source and plan.source.split("/")[1] in changed:
            diff.append(f"it starts from {plan.source}, which trains again")
        if diff:
            changed[plan.name] = diff
    return changed


def mixed_settings(recorded: dict[str, dict], expected: dict[str, dict],
                   trials: list[str]) -> list[str]:
    """Settings that differ between `trials` as they were trained (`recorded`: their resolved
    configs, the sweep's `trials.json`) although the sweep gives them all the same value
    (`expected`: the configs it expands to now): e.g. a trial restarted with `--set
    optim.epochs=2` beside trials trained for 3. Fields the sweep itself varies (its cases and
    axes, and what follows from them) are not news. One line per field."""
    names = [t for t in trials if t in recorded and t in expected]
    if len(names) < 2:
        return []
    flat = {t: _flatten(recorded[t]) for t in names}
    planned = {t: _flatten(expected[t]) for t in names}
    lines = []
    for key in sorted({k for f in flat.values() for k in f} - {"name", "tracking.uri"}):
        if len({json.dumps(planned[t].get(key), default=str) for t in names}) > 1:
            continue  # the sweep varies it
        by_value: dict[str, list[str]] = {}
        for trial in names:
            by_value.setdefault(json.dumps(flat[trial].get(key, "(unset)"), default=str),
                                []).append(trial)
        if len(by_value) > 1:
            lines.append(f"the trials in this table were trained with different {key} although "
                         "the sweep gives them the same: " + "; ".join(
                             f"{value} ({', '.join(group)})" for value, group in by_value.items()))
    return lines


def _flatten(config: dict, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in config.items():
        if isinstance(value, dict) and value:
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out
