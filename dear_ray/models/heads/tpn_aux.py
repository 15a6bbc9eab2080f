"""TPN's auxiliary classification head on layer 3 (MMAction2 `AuxHead`), weight 0.5 in the loss.

Built by the Recognizer when `backbone.aux_channels > 0`; training only. As MMAction2's AuxHead:
ConvModule (Conv3d C -> 2C, kernel (1, 3, 3), stride (1, 2, 2), padding (0, 1, 1), BN3d, ReLU) ->
global average pool -> dropout 0.5 -> Linear(2C, K), cross-entropy. Child names `conv.conv`,
`conv.bn`, `fc` match MMAction2's `neck.aux_head.*` after the prefix mapping `neck.aux_head.` ->
`aux_head.`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from dear_ray.losses._checks import accuracy
from dear_ray.models.backbones._layers import ConvModule
from dear_ray.models.heads.base import check_positive, linear_classifier

AUX_LOSS_WEIGHT = 0.5


class AuxHead(nn.Module):
    """Auxiliary CE head.

    Args:
        conv: ConvModule C -> 2C.
        fc: Linear(2C, K).
        dropout: probability before `fc`.
        loss_weight: factor of the cross-entropy (0.5).
    """

    def __init__(self, conv: nn.Module, fc: nn.Linear, *, dropout: float, loss_weight: float) -> None:
        super().__init__()
        self.conv = conv
        self.dropout = nn.Dropout(dropout)
        self.fc = fc
        self.loss_weight = loss_weight

    def forward(self, aux_map: torch.Tensor) -> torch.Tensor:
        """(B, C, T, H, W) -> logits (B, K)."""
        return self.fc(self.dropout(self.conv(aux_map).mean(dim=(2, 3, 4))))

    def loss(self, aux_map: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        """loss_weight * CE(forward(aux_map), labels); stats `loss_aux` (weighted), `aux_acc`."""
        logits = self(aux_map)
        loss = self.loss_weight * F.cross_entropy(logits, labels)
        return loss, {"loss_aux": float(loss.detach()), "aux_acc": accuracy(logits, labels)}


def create_aux_head(*, in_channels: int, num_classes: int, dropout: float = 0.5,
                    loss_weight: float = AUX_LOSS_WEIGHT, init_std: float = 0.01) -> AuxHead:
    """Build TPN's auxiliary head for a C = `in_channels` map."""
    check_positive("create_aux_head", in_channels=in_channels, num_classes=num_classes)
    conv = ConvModule(in_channels, 2 * in_channels, (1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1), dims=3)
    return AuxHead(conv, linear_classifier(2 * in_channels, num_classes, init_std), dropout=dropout,
                   loss_weight=loss_weight)
