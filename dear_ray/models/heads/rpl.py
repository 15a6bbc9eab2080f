"""The RPL baseline: reciprocal points (docs/methods.md#rpl), `metric: dot` (DEAR) or `l2` (ARPL)."""

from __future__ import annotations

import torch
from torch import nn

from dear_ray.losses.rpl import RPL_METRICS, rpl_logits, rpl_loss
from dear_ray.models.heads.base import Head, HeadInputs, check_positive, register_head


class RPLHead(Head):
    """Logits from K learnable reciprocal points; loss of `dear_ray.losses.rpl_loss`.

    Args:
        points: (K, F) parameter, the reciprocal points (DEAR: `fc_centers.weight`).
        radius: scalar parameter r.
        metric: `dot` or `l2`.
        temperature: T of the cross-entropy.
        weight: factor of the radius term.
    """

    def __init__(self, points: nn.Parameter, radius: nn.Parameter, *, metric: str, temperature: float,
                 weight: float) -> None:
        super().__init__(points.shape[0])
        self.points = points
        self.radius = radius
        self.metric = metric
        self.temperature = temperature
        self.weight = weight

    def forward(self, features: torch.Tensor, *, sample: bool = False) -> torch.Tensor:
        return rpl_logits(features, self.points, self.metric)

    def loss(self, inputs: HeadInputs) -> tuple[torch.Tensor, dict[str, float]]:
        return rpl_loss(inputs.features, self.points, self.radius, inputs.labels, metric=self.metric,
                        temperature=self.temperature, weight=self.weight)

    def classifier_parameter_names(self) -> set[str]:
        return {"points"}


@register_head("rpl")
def create_rpl_head(
    *,
    in_features: int,
    num_classes: int,
    metric: str = "dot",
    temperature: float = 1.0,
    weight: float = 0.1,
    init_std: float = 0.01,
) -> RPLHead:
    """A reciprocal-point head: points ~ N(0, init_std^2), radius 0.

    DEAR's RPL heads (heads/*_rpl_head.py) keep the points as the weight of a bias-free Linear
    `fc_centers` initialised by mmcv `normal_init(std=init_std)`: 0.01 for I3D, SlowFast and TPN
    and 0.001 for TSM (their configs and the TSMRPLHead default). `build_recognizer` passes the
    backbone's `head_init_std` (0.001 on TSM) unless `head_options` sets `init_std`.

    Args:
        in_features: F.
        num_classes: K.
        metric: `dot` (DEAR's variant, the default) or `l2` (ARPL's squared distances).
        temperature: T > 0.
        weight: factor of the radius term.
        init_std: std of the points' normal init, > 0.
    """
    check_positive("create_rpl_head", in_features=in_features, num_classes=num_classes)
    if metric not in RPL_METRICS:
        raise ValueError(f"create_rpl_head: metric must be one of {RPL_METRICS}, got {metric!r}")
    if temperature <= 0:
        raise ValueError(f"create_rpl_head: temperature must be > 0, got {temperature}")
    if init_std <= 0:
        raise ValueError(f"create_rpl_head: init_std must be > 0, got {init_std}")
    points = nn.Parameter(init_std * torch.randn(num_classes, in_features))
    return RPLHead(points, nn.Parameter(torch.zeros(())), metric=metric, temperature=temperature,
                   weight=weight)
