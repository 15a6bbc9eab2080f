"""What a sweep folder records about its trials (`trials.json`: each trial's resolved config),
read by the aggregator for stores that do not carry it themselves."""

from __future__ import annotations

import json
import os
from pathlib import Path


def recorded_configs(sweep_dir: str | os.PathLike) -> dict[str, dict]:
    """Trial -> its resolved config as `trials.json` records it; {} without a readable file."""
    try:
        trials = json.loads((Path(sweep_dir) / "trials.json").read_text())
    except (OSError, ValueError):
        return {}
    return {name: config for name, config in trials.items() if isinstance(config, dict)}


def sweep_exclusion(sweep_dir: str | os.PathLike):
    """The `Exclusion` of the sweep's `eval.exclude_classes` (`dear_ray.metrics.exclusion`), read
    with its unknown lists from the first recorded trial config that sets it; None without."""
    from dear_ray.metrics.exclusion import exclusion_from_config

    for config in recorded_configs(sweep_dir).values():
        value = (config.get("eval") or {}).get("exclude_classes")
        data = config.get("data") or {}
        if value is not None:
            return exclusion_from_config(value, data.get("data_root", ""),
                                         data.get("unknown") or {"unknown": "unknown.txt"})
    return None


def data_roots(sweep_dir: str | os.PathLike) -> dict[str, str]:
    """Trial -> its `data.data_root`, from the sweep's recorded trial configs."""
    return {name: str((config.get("data") or {}).get("data_root", ""))
            for name, config in recorded_configs(sweep_dir).items()}
