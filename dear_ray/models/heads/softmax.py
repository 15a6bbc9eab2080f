"""The plain softmax classifier (DEAR's "DNN" baseline, docs/methods.md#softmax): cross-entropy on
a linear layer.

The recognizer's dropout (0.5) sits before `fc_cls`, so the same trained model also serves MC
dropout (`predict(stochastic_passes=T)`) and OpenMax: those are evaluation methods, not heads.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from dear_ray.losses._checks import accuracy
from dear_ray.models.heads.base import Head, HeadInputs, check_positive, linear_classifier, register_head


class SoftmaxHead(Head):
    """Linear logits, cross-entropy loss.

    Args:
        fc_cls: Linear(F, K).
    """

    def __init__(self, fc_cls: nn.Linear) -> None:
        super().__init__(fc_cls.out_features)
        self.fc_cls = fc_cls

    def forward(self, features: torch.Tensor, *, sample: bool = False) -> torch.Tensor:
        return self.fc_cls(features)

    def loss(self, inputs: HeadInputs) -> tuple[torch.Tensor, dict[str, float]]:
        logits = self.fc_cls(inputs.features)
        loss = F.cross_entropy(logits, inputs.labels)
        return loss, {"loss_cls": float(loss.detach()), "acc": accuracy(logits, inputs.labels)}

    def classifier_parameter_names(self) -> set[str]:
        return {"fc_cls.weight", "fc_cls.bias"}


@register_head("softmax")
def create_softmax_head(*, in_features: int, num_classes: int, init_std: float = 0.01) -> SoftmaxHead:
    """A softmax head.

    Args:
        in_features: F, the pooled feature width.
        num_classes: K.
        init_std: std of the normal init of `fc_cls.weight`.
    """
    check_positive("create_softmax_head", in_features=in_features, num_classes=num_classes)
    return SoftmaxHead(linear_classifier(in_features, num_classes, init_std))
