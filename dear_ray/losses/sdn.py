"""SDN's scene-adversarial and human-mask confusion losses (Choi et al. 2019; docs/methods.md#sdn)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

SCENE_LABEL_KINDS = ("soft", "hard")


def sdn_scene_loss(
    scene_logits: torch.Tensor,
    scene: torch.Tensor,
    *,
    kind: str = "soft",
) -> tuple[torch.Tensor, dict[str, float]]:
    """L_scene = mean_b sum_k -q_bk log softmax(scene_logits)_bk.

    The caller applies gradient reversal before the scene MLP; this is the plain classification
    loss the MLP minimises.

    Args:
        scene_logits: (B, P) scene-classifier outputs.
        scene: (B, P) soft scene pseudo-labels (probabilities), or (B,) integer scene classes.
        kind: `soft` uses q as given; `hard` uses the one-hot of argmax q.

    Returns:
        The scalar loss and stats `loss_scene` and `scene_acc` (agreement with argmax q).
    """
    if kind not in SCENE_LABEL_KINDS:
        raise ValueError(f"sdn_scene_loss: unknown kind {kind!r}; expected one of {SCENE_LABEL_KINDS}")
    if scene_logits.dim() != 2:
        raise ValueError(f"sdn_scene_loss: expected scene_logits (B, P), got {tuple(scene_logits.shape)}")
    if scene.dim() == 1 and not scene.dtype.is_floating_point:
        target = scene
        soft = None
    elif scene.shape == scene_logits.shape:
        target = scene.argmax(dim=1)
        soft = scene.to(scene_logits.dtype)
    else:
        raise ValueError(f"sdn_scene_loss: expected scene labels (B, P) = {tuple(scene_logits.shape)} "
                         f"or integer (B,), got {tuple(scene.shape)} {scene.dtype}")
    if kind == "soft" and soft is not None:
        loss = -(soft * F.log_softmax(scene_logits, dim=1)).sum(dim=1).mean()
    else:
        loss = F.cross_entropy(scene_logits, target)
    acc = float((scene_logits.detach().argmax(1) == target).float().mean())
    return loss, {"loss_scene": float(loss.detach()), "scene_acc": acc}


def sdn_mask_loss(masked_logits: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
    """L_mask = -H(softmax(z_masked)), averaged over the batch: minimising it MAXIMISES the entropy
    of the action prediction on human-masked clips (the paper's intent; the released SDN code
    routes it through a gradient-reversal head, which inverts the sign).

    Args:
        masked_logits: (B, K) action logits of the masked clips.

    Returns:
        The scalar loss and stats `loss_mask` and `mask_entropy` (mean H, nats).
    """
    if masked_logits.dim() != 2:
        raise ValueError(f"sdn_mask_loss: expected masked_logits (B, K), got {tuple(masked_logits.shape)}")
    log_p = F.log_softmax(masked_logits, dim=1)
    entropy = -(log_p.exp() * log_p).sum(dim=1).mean()
    loss = -entropy
    return loss, {"loss_mask": float(loss.detach()), "mask_entropy": float(entropy.detach())}
