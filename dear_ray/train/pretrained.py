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
    the configured width); for fine-tuning only shapes are checked (a classifier of another width
    is skipped, missing tensors keep their initial values).

    Returns:
        The `LoadReport`, or None without `model.pretrained`.

    Raises:
        FileNotFoundError: no checkpoint at the path.
        CheckpointError: unreadable, a shape mismatch, or (eval_only) missing / unexpected keys;
            the message names the file, the model and the keys.
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
        return check_checkpoint(model, m.pretrained, complete=cfg.eval_only, what=what)
    except FileNotFoundError as err:
        from dear_ray.models.backbones.weights import weights_hint

        hint = weights_hint(m.backbone)
        raise FileNotFoundError(f"{err}; {hint}" if hint else str(err)) from None


__all__ = ["check_pretrained"]
