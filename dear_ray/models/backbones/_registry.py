"""The flat backbone registry: user-facing names -> builder functions."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import nn

from dear_ray.registry import Registry

BACKBONES: Registry[Callable[..., nn.Module]] = Registry("backbone")


def register_backbone(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
    """Decorator registering a backbone builder under its function name."""
    return BACKBONES.register()(fn)


def create_backbone(name: str, **options: Any) -> nn.Module:
    """Builds the backbone registered as `name` with keyword `options` (e.g. `num_segments=8`).

    Raises:
        UnknownNameError: `name` is not registered; the message lists the known names.
    """
    return BACKBONES.create(name, **options)


def list_backbones() -> list[str]:
    """The registered backbone names, sorted."""
    return BACKBONES.names()
