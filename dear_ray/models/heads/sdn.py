"""SDN (Choi et al. 2019, docs/methods.md#sdn): action cross-entropy + scene-adversarial loss
through gradient
reversal + human-mask confusion on masked clips.

The scene MLP reads the same pooled features as the action classifier (after the recognizer's
dropout), through `grad_reverse(f, alpha)`: the MLP learns to predict the scene while the backbone
learns to make that impossible. Child names follow SDN's ResNet (`place_mlp.<i>.fc/bn`,
`place_mlp.p_last_fc`).

SDN's separate mask step (libs/train_epoch.py `train_adv_msk_epoch`) runs the whole model in train
mode on the masked batch, so the scene MLP's BatchNorm running statistics also move on it, though
the mask loss sends it no gradient. `mask_step_scene_bn` (default true) does the same:
`mask_loss(..., separate_step=True)` runs the MLP on the masked features without gradient; false
leaves the MLP out of that step. Only the running statistics differ (the MLP's train-mode output
uses the batch's own statistics, and no metric reads the MLP). The joint mask step never runs it.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn

from dear_ray.losses._checks import accuracy
from dear_ray.losses.grl import grad_reverse
from dear_ray.losses.sdn import SCENE_LABEL_KINDS, sdn_mask_loss, sdn_scene_loss
from dear_ray.models.heads.base import Head, HeadInputs, check_positive, linear_classifier, register_head


class SDNHead(Head):
    """Action classifier + scene-adversarial MLP.

    Loss: CE(fc_cls(f), y) + L_scene(place_mlp(GRL_alpha(f)), q)
          [+ mask_weight * L_mask(fc_cls(f_masked)) when masked features are given].

    Args:
        fc_cls: Linear(F, K), the action classifier.
        place_mlp: the scene classifier, F -> P.
        alpha: gradient-reversal strength (1.0 scene-only stage, 0.5 full model).
        scene_labels: `soft` (q as given) or `hard` (one-hot of argmax q).
        mask_weight: factor of the mask-confusion loss.
        mask_step_scene_bn: the separate mask step updates the MLP's BatchNorm statistics.
    """

    uses_scene = True
    uses_masked_features = True

    def __init__(self, fc_cls: nn.Linear, place_mlp: nn.Sequential, *, alpha: float, scene_labels: str,
                 mask_weight: float, mask_step_scene_bn: bool = True) -> None:
        super().__init__(fc_cls.out_features)
        self.fc_cls = fc_cls
        self.place_mlp = place_mlp
        self.alpha = alpha
        self.scene_labels = scene_labels
        self.mask_weight = mask_weight
        self.mask_step_scene_bn = mask_step_scene_bn
        self.num_places = place_mlp.p_last_fc.out_features

    def forward(self, features: torch.Tensor, *, sample: bool = False) -> torch.Tensor:
        return self.fc_cls(features)

    def scene_logits(self, features: torch.Tensor) -> torch.Tensor:
        """(B, P) scene scores of the MLP behind gradient reversal."""
        return self.place_mlp(grad_reverse(features, self.alpha))

    def loss(self, inputs: HeadInputs) -> tuple[torch.Tensor, dict[str, float]]:
        if inputs.scene is None:
            raise ValueError("SDNHead.loss: the sdn head needs scene pseudo-labels (B, P); "
                             "pass scene= to training_loss (data.scene_labels)")
        if inputs.scene.dim() != 2 or inputs.scene.shape[1] != self.num_places:
            raise ValueError(f"SDNHead.loss: scene labels must be (B, {self.num_places}) "
                             f"(num_places={self.num_places}), got {tuple(inputs.scene.shape)}")
        logits = self.fc_cls(inputs.features)
        loss_cls = F.cross_entropy(logits, inputs.labels)
        loss_scene, stats = sdn_scene_loss(self.scene_logits(inputs.features), inputs.scene,
                                           kind=self.scene_labels)
        loss = loss_cls + loss_scene
        stats.update({"loss_cls": float(loss_cls.detach()), "acc": accuracy(logits, inputs.labels)})
        if inputs.masked_features is not None:
            loss_mask, mask_stats = self.mask_loss(inputs.masked_features)
            loss = loss + loss_mask
            stats.update(mask_stats)
        return loss, stats

    def mask_loss(self, masked_features: torch.Tensor, *, separate_step: bool = False
                  ) -> tuple[torch.Tensor, dict[str, float]]:
        """mask_weight * L_mask(fc_cls(f_masked)) (`dear_ray.losses.sdn_mask_loss`); stats
        `loss_mask` (unweighted) and `mask_entropy`.

        Args:
            masked_features: (B, F) pooled features of human-masked clips, after dropout.
            separate_step: SDN's separate mask step: with `mask_step_scene_bn`, in train mode, the
                scene MLP also runs on the features (no gradient), moving its BatchNorm statistics
                (skipped for a single clip, which BatchNorm cannot normalise).
        """
        if separate_step and self.mask_step_scene_bn and self.training and len(masked_features) > 1:
            with torch.no_grad():
                self.scene_logits(masked_features)
        loss_mask, stats = sdn_mask_loss(self.fc_cls(masked_features))
        return self.mask_weight * loss_mask, stats

    def classifier_parameter_names(self) -> set[str]:
        return {"fc_cls.weight", "fc_cls.bias"}


@register_head("sdn")
def create_sdn_head(
    *,
    in_features: int,
    num_classes: int,
    num_places: int = 365,
    num_place_hidden_layers: int = 1,
    alpha: float = 0.5,
    scene_labels: str = "soft",
    mask_weight: float = 1.0,
    mask_step_scene_bn: bool = True,
    init_std: float = 0.01,
) -> SDNHead:
    """An SDN head.

    Args:
        in_features: F (512 for R3D-18); also the MLP's hidden width.
        num_classes: K.
        num_places: P, scene classes (365 Places classes).
        num_place_hidden_layers: hidden [Linear F->F, BN, ReLU] blocks before the last Linear(F, P).
        alpha: gradient-reversal strength, >= 0.
        scene_labels: `soft` or `hard`.
        mask_weight: factor of the human-mask confusion loss, >= 0.
        mask_step_scene_bn: the separate mask step also moves the scene MLP's BatchNorm statistics
            (SDN's whole-model forward; see the module docstring).
        init_std: std of `fc_cls`'s normal init.
    """
    check_positive("create_sdn_head", in_features=in_features, num_classes=num_classes,
                   num_places=num_places)
    if not isinstance(num_place_hidden_layers, int) or num_place_hidden_layers < 0:
        raise ValueError(f"create_sdn_head: num_place_hidden_layers must be an integer >= 0, got "
                         f"{num_place_hidden_layers!r}")
    if scene_labels not in SCENE_LABEL_KINDS:
        raise ValueError(f"create_sdn_head: scene_labels must be one of {SCENE_LABEL_KINDS}, got "
                         f"{scene_labels!r}")
    if alpha < 0 or mask_weight < 0:
        raise ValueError(f"create_sdn_head: alpha and mask_weight must be >= 0, got alpha={alpha}, "
                         f"mask_weight={mask_weight}")
    if not isinstance(mask_step_scene_bn, bool):
        raise ValueError(f"create_sdn_head: mask_step_scene_bn must be true or false, got "
                         f"{mask_step_scene_bn!r}")
    blocks: OrderedDict[str, nn.Module] = OrderedDict()
    for i in range(num_place_hidden_layers):
        blocks[str(i)] = nn.Sequential(OrderedDict(
            fc=nn.Linear(in_features, in_features), bn=nn.BatchNorm1d(in_features), relu=nn.ReLU()))
    blocks["p_last_fc"] = nn.Linear(in_features, num_places)
    return SDNHead(linear_classifier(in_features, num_classes, init_std), nn.Sequential(blocks),
                   alpha=alpha, scene_labels=scene_labels, mask_weight=mask_weight,
                   mask_step_scene_bn=mask_step_scene_bn)
