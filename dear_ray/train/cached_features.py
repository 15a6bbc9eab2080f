"""A trial on the feature cache: extraction, the backbone stand-in and the cached datasets.

`attach_feature_cache(model, cfg, ...)` makes sure every entry the trial reads exists (the
training views of each epoch, every split it scores; `dear_ray.train.feature_cache`), then puts a
`CachedBackbone` in place of the model's backbone: it holds the same parameters under the same
names (checkpoints keep the backbone's weights and load into an uncached model), and its
`forward_features` takes a batch of cached outputs and returns it as the map. The loaders then
read `dear_ray.train.feature_cache.CachedFeatureDataset`s (`dear_ray.train.data.build_dataset`),
whose items are the dataset items of the videos with the cached output in place of the clip.

Training views: epoch `e` reads the entry of view `e`, the training pipeline's draw of epoch `e`
with seed `feature_cache_seed` (default: the trial's seed), i.e. the very clips an uncached
trial of that seed trains on in epoch `e` (docs/backbones.md).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from dear_ray.config import ExperimentConfig
from dear_ray.models.backbones.output import BackboneOutput
from dear_ray.train import feature_cache as fc

log = logging.getLogger(__name__)
_BACKBONE_ATTRS = ("num_features", "debias_channels", "aux_channels", "segmental",
                   "head_init_std")


class CachedBackbone(nn.Module):
    """The frozen backbone's parameters (same names) with a `forward_features` that passes the
    cached outputs through as the single map.

    Attributes:
        entries: `(split, view) -> entry folder` (`view` None for the test-mode entries).
    """

    def __init__(self, backbone: nn.Module, entries: dict) -> None:
        super().__init__()
        for name, child in backbone.named_children():
            self.add_module(name, child)
        for name, param in backbone.named_parameters(recurse=False):
            self.register_parameter(name, param)
        for name, buf in backbone.named_buffers(recurse=False):
            self.register_buffer(name, buf,
                                 persistent=name not in backbone._non_persistent_buffers_set)
        for attr in _BACKBONE_ATTRS:
            if hasattr(backbone, attr):
                setattr(self, attr, getattr(backbone, attr))
        self.entries = dict(entries)

    def forward_features(self, x: torch.Tensor) -> BackboneOutput:
        return BackboneOutput(maps=(x,), debias_map=x, aux_map=None)


def cached_entries(model) -> dict | None:
    """The entries of a model on the feature cache, or None (a live backbone)."""
    backbone = getattr(model, "backbone", None)
    return backbone.entries if isinstance(backbone, CachedBackbone) else None


def _stored(out: BackboneOutput, kind: str, segmental: bool, name: str) -> torch.Tensor:
    """One batch's outputs as the cache stores them (module docstring of `feature_cache`)."""
    if out.aux_map is not None:
        raise ValueError(f"backbone {name} has an auxiliary map (TPN): the feature cache holds "
                         "one output a clip; set model.feature_cache: off")
    if kind == "vectors":
        from dear_ray.models.recognizer import pool_maps

        if segmental:
            return out.maps[0].mean(dim=(3, 4), keepdim=True).float()
        return pool_maps(out.maps)[:, :, None, None, None].float()
    if len(out.maps) != 1 or out.debias_map is not out.maps[0]:
        raise ValueError(f"backbone {name} returns {len(out.maps)} maps and a separate CED map: "
                         "the feature cache holds one map a clip, which this head cannot use; "
                         "set model.feature_cache: off")
    return out.maps[0].half()


def extract(folder: Path, dataset, cfg: ExperimentConfig, backbone: nn.Module, *, kind: str,
            device, amp: bool, test_mode: bool, name: str) -> dict:
    """Write `features.npy` of `dataset`'s items into `folder`; the manifest fields."""
    from dear_ray.train.data import make_loader
    from dear_ray.train.loop import _to_device, autocast

    array, bad = None, []
    for batch in make_loader(dataset, cfg.data, seed=cfg.seed):
        bad.extend(batch["bad"])
        if batch.get("clip") is None:
            continue
        clips = _to_device(batch["clip"], device, False, batch.get("clip_norm"))
        with torch.no_grad(), autocast(device, amp):
            out = backbone.forward_features(clips.flatten(0, 1) if test_mode else clips)
        rows = _stored(out, kind, bool(getattr(backbone, "segmental", False)), name)
        if test_mode:
            rows = rows.view(clips.shape[0], clips.shape[1], *rows.shape[1:])
        rows = rows.cpu().numpy()
        if array is None:
            array = np.lib.format.open_memmap(folder / fc.FEATURES, mode="w+", dtype=rows.dtype,
                                              shape=(len(dataset), *rows.shape[1:]))
        array[batch["index"].numpy()] = rows
    if array is None:
        raise ValueError(f"no decodable video among the {len(dataset)} of the split: nothing "
                         "to cache")
    array.flush()
    return {"shape": list(array.shape), "dtype": str(array.dtype),
            "bad": [[b.index, b.video_id, b.path, b.reason] for b in bad]}


def _wanted(cfg: ExperimentConfig) -> list[tuple[str, int | None]]:
    """`(split, view)` of every entry the trial reads: a training view per epoch (none with
    `eval_only`), then every scored split (with `val` when validated) in test mode."""
    views = [] if cfg.eval_only else [("train", e) for e in range(cfg.optim.epochs)]
    splits = list(cfg.eval_splits())
    if cfg.eval.every_n_epochs and "val" in cfg.data.split_lists() and "val" not in splits:
        splits.append("val")
    return views + [(s, None) for s in splits]


def attach_feature_cache(model, cfg: ExperimentConfig, num_classes: int, device, amp: bool):
    """With `model.feature_cache: on`: build the missing entries of the trial, then put a
    `CachedBackbone` into `model` (in place; also returned); else return `model` as it is.
    `amp`: the training autocast is available (`resources.amp` on a GPU); the test-mode entries
    use it only with `eval.precision: amp`, as the stores."""
    from dear_ray.train.data import build_dataset
    from dear_ray.train.prediction import eval_autocast

    if cfg.model.feature_cache != "on":
        return model

    kind, weights = fc.stored_kind(model), fc.weights_hash(model.backbone)
    backbone = model.backbone.to(device)
    root, entries = fc.cache_dir(cfg), {}
    for split, view in _wanted(cfg):
        test_mode = view is None
        use_amp = eval_autocast(cfg, amp) if test_mode else amp
        inputs = fc.entry_inputs(cfg, split, weights=weights, kind=kind, view=view,
                                 precision="bf16" if use_amp and device.type == "cuda" else "fp32")

        def build(folder: Path, split=split, view=view, test_mode=test_mode, use_amp=use_amp):
            clock = time.perf_counter()
            seeded = cfg if test_mode else cfg.override({"seed": fc.view_seed(cfg)})
            dataset = build_dataset(seeded, split, test_mode=test_mode, num_classes=num_classes)
            if view is not None:
                dataset.set_epoch(view)
            fields = extract(folder, dataset, cfg, backbone, kind=kind, device=device,
                             amp=use_amp, test_mode=test_mode, name=cfg.model.backbone)
            log.info("feature cache: %s %s extracted in %.1f s", split,
                     "test views" if test_mode else f"training view {view}",
                     time.perf_counter() - clock)
            return fields

        entries[(split, view)] = fc.ensure_entry(root, inputs, build)
    model.backbone = CachedBackbone(backbone, entries)
    return model


__all__ = ["CachedBackbone", "attach_feature_cache", "cached_entries", "extract"]
