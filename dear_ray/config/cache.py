"""The cross-field rules of the feature cache (`model.feature_cache`; docs/backbones.md)."""

from __future__ import annotations

from typing import Any

# heads whose training passes something other than the clips of the batch through the backbone
_UNCACHEABLE = {
    "psl": "psl's training loss passes a random frame permutation of every batch through the "
           "backbone, which no cache holds",
}


def check_feature_cache(cfg: Any) -> None:
    """Raise ValueError naming the fields when `model.feature_cache` cannot be honoured.

    The cache stores the outputs of a FROZEN backbone, so it needs `model.freeze_backbone: true`;
    it holds the backbone's outputs for the batch clips only, so heads that put other clips
    through the backbone in training (psl's shuffled copies, SDN's masked clips from
    `data.detections`) cannot use it.
    """
    model = cfg.model
    if model.feature_cache == "off":
        for name in ("feature_cache_dir", "feature_cache_seed"):
            if getattr(model, name) is not None:
                raise ValueError(f"model.{name} is set but model.feature_cache is off: set "
                                 "model.feature_cache: on, or unset it")
        return
    if not model.freeze_backbone:
        raise ValueError("model.feature_cache: on needs model.freeze_backbone: true (a backbone "
                         "that trains changes its features every step; nothing can be cached)")
    if model.head in _UNCACHEABLE:
        raise ValueError(f"model.feature_cache: on does not work with model.head: {model.head}: "
                         f"{_UNCACHEABLE[model.head]}; set model.feature_cache: off")
    if cfg.data.detections is not None:
        raise ValueError("model.feature_cache: on does not work with data.detections: SDN's "
                         "human-masked clips go through the backbone in training; unset one")
