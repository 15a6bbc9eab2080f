"""The Recognizer: backbone -> global average pool -> dropout -> head (docs/architecture.md).

Module names follow MMAction2: `backbone.*`, `cls_head.fc_cls.*`, `cls_head.debias_head.*`, and TPN's
auxiliary head `aux_head.*` (MMAction2: `neck.aux_head.*`).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from dear_ray.models.backbones import create_backbone
from dear_ray.models.heads import HEADS, Head, HeadInputs, create_aux_head, create_head, head_option_names


class RecognizerOutput(NamedTuple):
    """logits (B, K); features (B, num_features): pooled backbone features before dropout."""

    logits: torch.Tensor
    features: torch.Tensor


class PredictOutput(NamedTuple):
    """View-averaged test outputs.

    Attributes:
        logits: (B, K) deterministic logits (dropout off, Bayesian weights at their means), averaged
            over views.
        features: (B, F) pooled features averaged over views.
        sample_logits: (S, B, K) each stochastic pass's view-averaged logits, or None when S = 1.
    """

    logits: torch.Tensor
    features: torch.Tensor
    sample_logits: torch.Tensor | None


def pool_maps(maps: tuple[torch.Tensor, ...]) -> torch.Tensor:
    """Global-average-pool each (B, C_i, T, H, W) map and concatenate: (B, sum_i C_i)."""
    return torch.cat([m.mean(dim=(2, 3, 4)) for m in maps], dim=1)


class Recognizer(nn.Module):
    """A video classifier. Build it with `build_recognizer`.

    Args:
        backbone: a module following the backbone contract.
        cls_head: a `Head`.
        dropout: probability of the dropout between pooling and the head.
        aux_head: TPN's auxiliary head (`AuxHead`), or None.
    """

    def __init__(self, backbone: nn.Module, cls_head: Head, *, dropout: float,
                 aux_head: nn.Module | None = None) -> None:
        super().__init__()
        self.backbone = backbone
        self.cls_head = cls_head
        self.dropout = nn.Dropout(dropout)
        self.aux_head = aux_head
        self.num_classes = cls_head.num_classes

    def forward(self, clips: torch.Tensor) -> RecognizerOutput:
        """clips (B, 3, T, H, W) -> RecognizerOutput. In train mode the dropout is active."""
        features = pool_maps(self.backbone.forward_features(clips).maps)
        return RecognizerOutput(self.cls_head(self.dropout(features)), features)

    def training_loss(
        self,
        clips: torch.Tensor,
        labels: torch.Tensor,
        *,
        anneal: float,
        iteration: int,
        scene: torch.Tensor | None = None,
        masked_clips: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """The training loss of one batch.

        Args:
            clips: (B, 3, T, H, W).
            labels: (B,) class indices in [0, K).
            anneal: lambda_t of SPEC 1.1 (`dear_ray.losses.annealing_coefficient`).
            iteration: global iteration (CED alternating parity).
            scene: (B, P) soft scene labels; required by `sdn`, ignored by other heads.
            masked_clips: (B, 3, T, H, W) human-masked clips; used by `sdn` (mask confusion; its
                loss is added to this step's loss rather than taken as a second optimiser step),
                ignored by other heads.

        Returns:
            The scalar loss and stats (python floats): `loss` and the head's terms (`loss_cls`,
            `loss_avu`, `loss_ced`, `hsic_*`, `loss_scene`, `loss_mask`, ...), `loss_aux` for TPN,
            and `acc` (top-1 on this batch).
        """
        if labels.dim() != 1 or labels.shape[0] != clips.shape[0]:
            raise ValueError(f"training_loss: labels must be ({clips.shape[0]},), got {tuple(labels.shape)}")
        lo, hi = int(labels.min()), int(labels.max())
        if lo < 0 or hi >= self.num_classes:
            raise ValueError(f"training_loss: labels must be in [0, {self.num_classes}), got values "
                             f"in [{lo}, {hi}]")
        out = self.backbone.forward_features(clips)
        masked_features = None
        if masked_clips is not None and self.cls_head.uses_masked_features:
            if masked_clips.shape != clips.shape:
                raise ValueError(f"training_loss: masked_clips must have the clips' shape "
                                 f"{tuple(clips.shape)}, got {tuple(masked_clips.shape)}")
            masked = pool_maps(self.backbone.forward_features(masked_clips).maps)
            masked_features = self.dropout(masked)
        inputs = HeadInputs(
            features=self.dropout(pool_maps(out.maps)), labels=labels, anneal=float(anneal),
            iteration=int(iteration), debias_map=out.debias_map if self.cls_head.uses_debias_map else None,
            scene=scene if self.cls_head.uses_scene else None, masked_features=masked_features)
        loss, stats = self.cls_head.loss(inputs)
        if self.aux_head is not None:
            loss_aux, aux_stats = self.aux_head.loss(out.aux_map, labels)
            loss = loss + loss_aux
            stats.update(aux_stats)
        stats["loss"] = float(loss.detach())
        return loss, stats

    @torch.no_grad()
    def predict(self, clips: torch.Tensor, *, stochastic_passes: int = 1) -> PredictOutput:
        """Test-time outputs averaged over views (SPEC 1.1: average logits, then score).

        The backbone runs once per view in eval mode (BatchNorm uses running statistics); the
        stochastic passes repeat only the dropout and the head, which is where all randomness lives
        (MC dropout: dropout on; bnn: one weight draw per pass). The module's train/eval mode is
        restored afterwards.

        Args:
            clips: (B, V, 3, T, H, W), V views (clips x crops) per video.
            stochastic_passes: S >= 1; S > 1 also returns each pass's logits.
        """
        if clips.dim() != 6:
            raise ValueError(f"predict: expected clips (B, V, C, T, H, W), got {tuple(clips.shape)}")
        if not isinstance(stochastic_passes, int) or stochastic_passes < 1:
            raise ValueError(f"predict: stochastic_passes must be an integer >= 1, got {stochastic_passes!r}")
        b, v = clips.shape[:2]
        was_training = self.training
        self.eval()
        try:
            features = pool_maps(self.backbone.forward_features(clips.flatten(0, 1)).maps)
            logits = self.cls_head(features).view(b, v, -1).mean(dim=1)
            samples = None
            if stochastic_passes > 1:
                p = self.dropout.p
                samples = torch.stack([
                    self.cls_head(F.dropout(features, p, training=True), sample=True).view(b, v, -1).mean(dim=1)
                    for _ in range(stochastic_passes)])
        finally:
            self.train(was_training)
        return PredictOutput(logits, features.view(b, v, -1).mean(dim=1), samples)

    def classifier_parameter_names(self) -> set[str]:
        """Full names of the parameters of the layers that output class scores (`cls_head.fc_cls.*`,
        the CED branches' fcs, `aux_head.fc.*`): the classifier lr multiplier applies to them."""
        names = {f"cls_head.{n}" for n in self.cls_head.classifier_parameter_names()}
        if self.aux_head is not None:
            names |= {"aux_head.fc.weight", "aux_head.fc.bias"}
        return names


def build_recognizer(
    *,
    backbone: str,
    head: str,
    num_classes: int,
    backbone_options: dict[str, Any] | None = None,
    head_options: dict[str, Any] | None = None,
    dropout: float = 0.5,
) -> Recognizer:
    """Build a recognizer from registered names.

    The head builder receives `in_features = backbone.num_features`, `num_classes` and, when it
    declares it (`dear`, `dear_alt`), `debias_channels = backbone.debias_channels`, plus
    `head_options`. TPN's auxiliary head is added when `backbone.aux_channels > 0`.

    Args:
        backbone: one of `list_backbones()`.
        head: one of `list_heads()`.
        num_classes: K >= 1.
        backbone_options: keyword options of the backbone builder.
        head_options: keyword options of the head builder (not `in_features`, `num_classes`,
            `debias_channels`: those come from the backbone).
        dropout: between pooling and the head, in [0, 1).

    Raises:
        UnknownNameError: an unknown backbone or head name (the message lists the known ones).
        ValueError: a bad option, or a head whose needs the backbone cannot meet (a CED head on a
            backbone without a debias map).
    """
    if not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"build_recognizer: num_classes must be a positive integer, got {num_classes!r}")
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"build_recognizer: dropout must be in [0, 1), got {dropout}")
    HEADS.get(head)  # an unknown head fails before the (possibly large) backbone is built
    head_options = dict(head_options or {})
    supplied = {"in_features", "num_classes", "debias_channels"} & set(head_options)
    if supplied:
        raise ValueError(f"build_recognizer: head_options may not set {sorted(supplied)}; they come "
                         f"from the backbone and num_classes")
    net = create_backbone(backbone, **(backbone_options or {}))
    context = {"in_features": net.num_features, "num_classes": num_classes}
    if "debias_channels" in head_option_names(head):
        if net.debias_channels < 1:
            raise ValueError(f"head {head!r} needs a backbone with a debias map for its CED branch; "
                             f"backbone {backbone!r} has debias_channels={net.debias_channels}")
        context["debias_channels"] = net.debias_channels
    cls_head = create_head(head, **context, **head_options)
    aux_head = None
    if net.aux_channels > 0:
        aux_head = create_aux_head(in_channels=net.aux_channels, num_classes=num_classes)
    return Recognizer(net, cls_head, dropout=dropout, aux_head=aux_head)


__all__ = ["PredictOutput", "Recognizer", "RecognizerOutput", "build_recognizer", "pool_maps"]
