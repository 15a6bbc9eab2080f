"""Save and restore the full training state: model, optimiser, scheduler, epoch, step, RNGs.

A checkpoint is a directory holding `state.pt` (loadable with `torch.load(weights_only=True)`:
only tensors, numbers, strings and containers) and, when given, the resolved `config.yaml`.
`epoch` is the last COMPLETED epoch (0-based), so training resumes at `epoch + 1`.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from dear_ray.train.optim import unwrap_model

STATE_FILE = "state.pt"
FORMAT_VERSION = 1


@dataclass
class TrainState:
    """Where a restored run continues.

    Attributes:
        epoch: the last completed epoch (0-based).
        global_step: optimiser steps (batches) taken so far.
        extra: whatever was saved alongside (MLflow run id, last metrics...).
    """

    epoch: int
    global_step: int
    extra: dict[str, Any] = field(default_factory=dict)


def rng_state() -> dict[str, Any]:
    """Python, numpy (global) and torch (CPU, and CUDA when present) RNG states, weights-only safe."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached": float(cached)},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what `rng_state` returned."""
    random.setstate(_as_tuple(state["python"]))
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"],
                         n["has_gauss"], n["cached"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _as_tuple(value: Any) -> Any:
    return tuple(_as_tuple(v) for v in value) if isinstance(value, (list, tuple)) else value


def save_checkpoint(directory: str | Path, *, model: nn.Module,
                    optimizer: torch.optim.Optimizer | None = None,
                    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
                    epoch: int, global_step: int, extra: dict[str, Any] | None = None,
                    config_yaml: str | None = None) -> Path:
    """Write the training state into `directory` (created); returns the directory.

    The model's state dict is taken from inside a DDP wrapper, so keys never carry `module.`.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    state = {
        "format_version": FORMAT_VERSION,
        "model": unwrap_model(model).state_dict(),
        "optimizer": optimizer.state_dict() if optimizer is not None else None,
        "scheduler": scheduler.state_dict() if scheduler is not None else None,
        "epoch": int(epoch),
        "global_step": int(global_step),
        "rng": rng_state(),
        "extra": dict(extra or {}),
    }
    torch.save(state, directory / STATE_FILE)
    if config_yaml is not None:
        (directory / "config.yaml").write_text(config_yaml)
    return directory


def load_checkpoint(directory: str | Path, *, model: nn.Module,
                    optimizer: torch.optim.Optimizer | None = None,
                    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
                    restore_rng: bool = True, map_location: str | torch.device = "cpu"
                    ) -> TrainState:
    """Restore what `save_checkpoint` wrote into the given objects (strict model keys).

    Raises:
        FileNotFoundError: `directory` has no `state.pt`.
        ValueError: an unknown checkpoint format version.
    """
    path = Path(directory) / STATE_FILE
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {directory} has no {STATE_FILE}")
    state = torch.load(path, map_location=map_location, weights_only=True)
    if state.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"checkpoint {path}: format version {state.get('format_version')!r}, "
                         f"expected {FORMAT_VERSION}")
    unwrap_model(model).load_state_dict(state["model"])
    if optimizer is not None and state["optimizer"] is not None:
        optimizer.load_state_dict(state["optimizer"])
    if scheduler is not None and state["scheduler"] is not None:
        scheduler.load_state_dict(state["scheduler"])
    if restore_rng:
        set_rng_state(state["rng"])
    return TrainState(epoch=state["epoch"], global_step=state["global_step"],
                      extra=state["extra"])
