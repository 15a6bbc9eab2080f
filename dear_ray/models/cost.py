"""Parameter count and forward FLOPs of a configured model, computed on the meta device (no
memory, no weights read): what `dear-ray sweep --dry-run` prints per trial."""

from __future__ import annotations

from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode


def model_cost(model_cfg: Any, *, num_classes: int, clip_len: int, crop_size: int
               ) -> tuple[int, int, float]:
    """(all parameters, trainable parameters, GFLOPs of one clip's forward pass).

    FLOPs are torch.utils.flop_counter's (2 per multiply-add; torchvision's published `_ops` and
    most papers' "GFLOPs" count multiply-adds, half of this) for one `(1, 3, clip_len, crop_size,
    crop_size)` clip through backbone, pooling and head; 0.0 when a backbone cannot run on the
    meta device. A HuggingFace backbone whose `hf_dir` is not on this machine is counted with its
    preset's configuration.

    Args:
        model_cfg: `cfg.model` (a `ModelConfig`).
    """
    from dear_ray.models import build_recognizer

    options = model_cfg.recognizer_options()
    with torch.device("meta"):
        try:
            model = build_recognizer(num_classes=num_classes, **options)
        except FileNotFoundError:
            if "hf_dir" not in options["backbone_options"]:
                raise
            # a HuggingFace folder that is not on this machine: the preset's configuration
            options["backbone_options"] = {k: v for k, v in options["backbone_options"].items()
                                           if k != "hf_dir"}
            model = build_recognizer(num_classes=num_classes, **options)
        model.eval()
        total = sum(p.numel() for p in model.parameters())
        trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
        clip = torch.empty(1, 3, clip_len, crop_size, crop_size)
        counter = FlopCounterMode(display=False)
        try:
            with counter, torch.no_grad():
                model(clip)
        except Exception:  # noqa: BLE001 - a backbone with data-dependent Python on its inputs
            return total, trainable, 0.0
    return total, trainable, counter.get_total_flops() / 1e9


def cost_summary(cfg: Any, num_classes: int = 101) -> str:
    """`params=28.2M trainable=0.1M gflops=88.0` for a validated `ExperimentConfig`."""
    frames = cfg.data.num_segments if cfg.data.sampler == "segments" else cfg.data.clip_len
    try:
            total, trainable, gflops = model_cost(cfg.model, num_classes=cfg.data.num_classes or num_classes,
                                              clip_len=frames, crop_size=cfg.data.crop_size)
    except ImportError as err:  # an optional backbone dependency missing here
        return f"params=n/a ({err})"
    return f"params={total / 1e6:.1f}M trainable={trainable / 1e6:.2f}M gflops={gflops:.1f}"


__all__ = ["cost_summary", "model_cost"]
