"""Differences between two resolved experiment configs (`dear-ray train --resume`, a resumed
sweep's trials), as `field: old -> new` lines.

A field that one config lacks and the other holds at its default is no difference: a config saved
before the field existed resolves to that default today.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

_MISSING = object()


def field_defaults(model: type[BaseModel]) -> dict[str, Any]:
    """The JSON-mode defaults of `model`'s fields, nested sections as nested dicts; a required
    field has none (it is left out)."""
    out: dict[str, Any] = {}
    for name, info in model.model_fields.items():
        if info.is_required():
            continue
        value = info.get_default(call_default_factory=True)
        out[name] = value.model_dump(mode="json") if isinstance(value, BaseModel) else value
    return out


def config_diff(old: Any, new: Any, defaults: Any = _MISSING, prefix: str = "") -> list[str]:
    """Dotted fields whose values differ between two resolved config dicts: `field: old -> new`.

    Args:
        old, new: the configs as plain dicts (`ExperimentConfig.to_dict()` or the saved YAML).
        defaults: the defaults at the same paths (`field_defaults(ExperimentConfig)`); a key
            missing on one side counts as changed unless the other side holds its default.
    """
    if isinstance(old, dict) and isinstance(new, dict):
        out = []
        for key in sorted(set(old) | set(new), key=str):
            sub = defaults.get(key, _MISSING) if isinstance(defaults, dict) else _MISSING
            out += config_diff(old.get(key, _MISSING), new.get(key, _MISSING), sub,
                               f"{prefix}{key}." if prefix or key else "")
        return out
    if old == new:
        return []
    if defaults is not _MISSING and _MISSING in (old, new) and defaults in (old, new):
        return []
    field_name = prefix.rstrip(".")
    show = (lambda v: "(unset)" if v is _MISSING else repr(v))
    return [f"{field_name}: {show(old)} -> {show(new)}"]


def format_changes(changed: dict[str, list[str]]) -> str:
    """`  <run>: <field>: <old> -> <new>; ...`, a line per run (`config_diff`'s lines)."""
    return "\n".join(f"  {name}: " + "; ".join(diff) for name, diff in changed.items())
