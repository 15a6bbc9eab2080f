"""The registered backbones as test parameters: the HuggingFace ones are skipped (with the reason)
where transformers is not installed."""

from __future__ import annotations

import importlib.util

import pytest

from dear_ray.models import list_backbones

HAS_TRANSFORMERS = importlib.util.find_spec("transformers") is not None
HF_BACKBONES = {"videomae_b", "videomae_tiny", "vjepa2_vitl", "vjepa2_tiny"}
NEEDS_TRANSFORMERS = pytest.mark.skipif(
    not HAS_TRANSFORMERS, reason="HuggingFace transformers is not installed (pip install 'dear-ray[hf]')")


def param(name: str):
    """`name` as a pytest parameter, skipped without transformers when it needs it."""
    return pytest.param(name, marks=NEEDS_TRANSFORMERS) if name in HF_BACKBONES else name


TINY = [param(n) for n in list_backbones() if n.endswith("_tiny")]
TINY_NAMES = [n for n in list_backbones() if n.endswith("_tiny")]
