"""`check_pretrained`: `model.pretrained` against the configured model, before any worker starts.

A module of its own, importing only torch and the model code, so the processes that check a
checkpoint before Ray Train starts (the sweep's preflight, a trial's driver) do not import the
metrics stack.
"""

from __future__ import annotations

from dear_ray.config import ExperimentConfig


def check_pretrained(cfg: ExperimentConfig):
    """Check `model.pretrained` against the configured model, built on the meta device.

    With `eval_only` the checkpoint must fit exactly (every tensor, no extra one, classifier of
    the configured width). For fine-tuning the backbone must load whole: every backbone tensor
    provided and no checkpoint tensor outside the heads left without a place (a checkpoint of
    another backbone would otherwise leave it at its random initialisation), unless
    `model.allow_partial_pretrained`; a classifier of another width is skipped, and head tensors
    the checkpoint lacks keep their initial values.

    Returns:
        The `LoadReport`, or None without `model.pretrained`.

    Raises:
        FileNotFoundError: no checkpoint at the path.
        CheckpointError: unreadable, a shape mismatch, (eval_only) missing / unexpected keys, or
            (fine-tuning) a backbone that does not load whole; the message names the file, the
            model and the keys.
    """
    import torch

    from dear_ray.models import build_recognizer
    from dear_ray.models.checkpoint import check_checkpoint
    from dear_ray.train.data import num_known_classes

    m = cfg.model
    if m.pretrained is None:
        return None
    k = num_known_classes(cfg.data)
    with torch.device("meta"):
        model = build_recognizer(num_classes=k, **m.recognizer_options())
    what = (f"model.backbone {m.backbone} + model.head {m.head} ({k} classes"
            + (f", head_options {m.head_options}" if m.head_options else "") + ")")
    try:
        report = check_checkpoint(model, m.pretrained, complete=cfg.eval_only, what=what)
    except FileNotFoundError as err:
        from dear_ray.models.backbones.weights import weights_hint

        hint = weights_hint(m.backbone)
        raise FileNotFoundError(f"{err}; {hint}" if hint else str(err)) from None
    if not cfg.eval_only and not m.allow_partial_pretrained:
        _require_backbone(report, what)
    return report


def _require_backbone(report, what: str) -> None:
    """Refuse a checkpoint whose backbone does not load whole into the model's (fine-tuning)."""
    from dear_ray.models.checkpoint import (
        DEAR_KEY_MAP,
        SDN_KEY_MAP,
        CheckpointError,
        list_keys,
    )

    heads = ("cls_head.", "aux_head.")
    head_prefixes = heads + tuple(old for old, new in DEAR_KEY_MAP + SDN_KEY_MAP
                                  if new.startswith(heads))
    missing = [k for k in report.missing
               if k.startswith("backbone.") and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in report.unexpected if not k.startswith(head_prefixes)]
    if not missing and not unexpected:
        return
    total = len(report.loaded) + len(report.missing) + len(report.skipped_classifier)
    lines = [f"{report.path}: its backbone does not load into {what}: {len(report.loaded)} of "
             f"the model's {total} tensors would load"]
    if missing:
        lines.append(f"  backbone tensors the checkpoint does not provide ({len(missing)}): "
                     f"{list_keys(missing)}")
    if unexpected:
        lines.append(f"  checkpoint tensors with no place in the model ({len(unexpected)}): "
                     f"{list_keys(unexpected)}")
    if report.skipped_classifier:
        lines.append(f"  classifier skipped ({report.classifier_difference()}): "
                     f"{list_keys(report.skipped_classifier)}")
    lines.append("  a checkpoint of another backbone (or another model.backbone_options) would "
                 "leave the backbone untrained; if loading only part of it is intended, set "
                 "model.allow_partial_pretrained: true")
    raise CheckpointError("\n".join(lines))


__all__ = ["check_pretrained"]
