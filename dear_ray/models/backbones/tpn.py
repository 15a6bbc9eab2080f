"""TPN (Yang et al. 2020) on SlowOnly-R50, as MMAction2's `ResNet3dSlowOnly` + `mmaction/models/necks/tpn.py`.

The neck reads stages 3 and 4 (C3 = 1024, C4 = 2048 at full size):
- spatial semantic modulation: stride-2 (1,3,3) convs bring stage 3 to stage 4's width and size;
- temporal rate modulation: a grouped (3,1,1) conv to C3 channels, then temporal max-pool by 8;
- information flow: top-down (level 4 added to level 3) and bottom-up (a (3,1,1) conv of level 3
  added to level 4), each followed by a level fusion (grouped 1x1 conv + BN + ReLU per level, concat,
  1x1 conv to C4);
- feature aggregation: concat of both flows -> 1x1 conv + BN + ReLU to C4.
Keys read `neck.spatial_modulation.spatial_modulation.0.0.conv.weight`, ... as MMAction2's. The auxiliary
head (MMAction2's `neck.aux_head`, CE x 0.5 on stage 3) is built by the Recognizer from `aux_map`.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from ._layers import ConvModule
from ._registry import register_backbone
from .output import BackboneOutput
from .resnet3d import SLOWONLY_R50, TINY, ResNet3d, build_preset, resnet3d_arguments


class _DownSample(nn.Module):
    """MMAction2's `DownSample` with downsample_scale (1, 1, 1) (every TPN config's): just `conv`."""

    def __init__(self, conv: ConvModule) -> None:
        super().__init__()
        self.conv = conv

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(x)


class SpatialModulation(nn.Module):
    """Per level: log2(C4 / C_i) stride-2 (1,3,3) convs (+BN+ReLU) doubling the width, or identity."""

    def __init__(self, in_channels: tuple[int, ...], out_channels: int) -> None:
        super().__init__()
        self.spatial_modulation = nn.ModuleList()
        for ch in in_channels:
            steps = int(math.log2(out_channels // ch))
            if steps < 1:
                self.spatial_modulation.append(nn.Identity())
                continue
            self.spatial_modulation.append(nn.ModuleList(
                ConvModule(ch * 2**k, ch * 2 ** (k + 1), (1, 3, 3), (1, 2, 2), (0, 1, 1)) for k in range(steps)
            ))

    def forward(self, xs: tuple[Tensor, ...]) -> list[Tensor]:
        outs = []
        for op, x in zip(self.spatial_modulation, xs, strict=True):
            for conv in op if isinstance(op, nn.ModuleList) else (op,):
                x = conv(x)
            outs.append(x)
        return outs


class TemporalModulation(nn.Module):
    """Grouped (3,1,1) conv (no BN, no ReLU), then temporal max-pool by `downsample_scale` (ceil)."""

    def __init__(self, in_channels: int, out_channels: int, downsample_scale: int, groups: int) -> None:
        super().__init__()
        self.conv = ConvModule(in_channels, out_channels, (3, 1, 1), 1, (1, 0, 0), groups=groups, norm=False,
                               act=False)
        self.pool = nn.MaxPool3d((downsample_scale, 1, 1), (downsample_scale, 1, 1), 0, ceil_mode=True)

    def forward(self, x: Tensor) -> Tensor:
        return self.pool(self.conv(x))


class LevelFusion(nn.Module):
    """Grouped 1x1 conv + BN + ReLU per level, concat, 1x1 conv + BN + ReLU to `out_channels`."""

    def __init__(self, in_channels: tuple[int, ...], mid_channels: tuple[int, ...], out_channels: int,
                 groups: int) -> None:
        super().__init__()
        self.downsamples = nn.ModuleList(
            _DownSample(ConvModule(i, m, 1, groups=groups)) for i, m in zip(in_channels, mid_channels, strict=True)
        )
        self.fusion_conv = ConvModule(sum(mid_channels), out_channels, 1)

    def forward(self, xs: list[Tensor]) -> Tensor:
        return self.fusion_conv(torch.cat([d(x) for d, x in zip(self.downsamples, xs, strict=True)], 1))


class TPNNeck(nn.Module):
    """The two-level TPN neck of `tpn_slowonly_r50` (cascade flow, identity up/down-sampling).

    Args:
        c3: stage-3 channels (1024).
        c4: stage-4 channels (2048); also the spatial-modulation width and the output width.
        width: the pyramid's width (MMAction2 `out_channels`, 1024).
        temporal_downsample: temporal max-pool of the temporal rate modulation (8).
        groups: groups of the temporal-modulation and level-fusion convs (32).
    """

    def __init__(self, *, c3: int, c4: int, width: int, temporal_downsample: int, groups: int) -> None:
        super().__init__()
        self.out_channels = c4
        self.spatial_modulation = SpatialModulation((c3, c4), c4)
        self.temporal_modulation_ops = nn.ModuleList(
            TemporalModulation(c4, width, temporal_downsample, groups) for _ in range(2)
        )
        self.downsample_ops = nn.ModuleList(
            [_DownSample(ConvModule(width, width, (3, 1, 1), 1, (1, 0, 0), norm=False, act=False))]
        )
        self.level_fusion_1 = LevelFusion((width, width), (width, width), c4, groups)
        self.level_fusion_2 = LevelFusion((width, width), (width, width), c4, groups)
        self.pyramid_fusion = ConvModule(2 * c4, c4, 1)

    def forward(self, c3: Tensor, c4: Tensor) -> Tensor:
        """`c3` `(B, C3, T, H/16, W/16)`, `c4` `(B, C4, T, H/32, W/32)` -> `(B, C4, ceil(T/8), H/32, W/32)`."""
        levels = self.spatial_modulation((c3, c4))
        levels = [op(x) for op, x in zip(self.temporal_modulation_ops, levels, strict=True)]
        low = levels[0] + levels[1]  # top-down flow (identity upsampling)
        top_down = self.level_fusion_1([low, levels[1]])
        # cascade flow: the bottom-up path starts from the top-down-updated level 3
        bottom_up = self.level_fusion_2([low, levels[1] + self.downsample_ops[0](low)])
        return self.pyramid_fusion(torch.cat([top_down, bottom_up], 1))

    def init_weights(self) -> None:
        """MMAction2's TPN init: xavier-uniform convs, BN weight 1 / bias 0."""
        for m in self.modules():
            if isinstance(m, nn.Conv3d):
                nn.init.xavier_uniform_(m.weight)
            elif isinstance(m, nn.BatchNorm3d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)


class ResNet3dTPN(ResNet3d):
    """A `ResNet3d` body (keys `layer1...` as MMAction2's backbone) with a `neck` (keys `neck.*`).

    `forward_features`: maps = (neck output `(B, C4, ceil(T/8), H/32, W/32)`,), debias_map = aux_map =
    stage 3 `(B, C3, T, H/16, W/16)` (docs/methods.md#dear; C3 = 1024 at full size).
    """

    def __init__(self, *, neck: TPNNeck, **resnet_args: Any) -> None:
        super().__init__(**resnet_args)
        self.neck = neck
        self.num_features = neck.out_channels
        self.debias_channels = self.stage_channels[-2]
        self.aux_channels = self.stage_channels[-2]

    def forward_features(self, x: Tensor) -> BackboneOutput:
        c3, c4 = self.forward_stages(x)[-2:]
        return BackboneOutput(maps=(self.neck(c3, c4),), debias_map=c3, aux_map=c3)


def tpn_resnet3d(*, width: int | None = None, temporal_downsample: int = 8, groups: int = 32,
                 zero_init_residual: bool = True, **resnet_options: Any) -> ResNet3dTPN:
    """Builds a TPN on a `resnet3d` body (MMAction2 configs/_base_/models/tpn_slowonly_r50.py).

    Args:
        width: the pyramid width; default the stage-3 width (1024 at full size).
        temporal_downsample: temporal max-pool of the temporal rate modulation.
        groups: groups of the grouped convs.
        zero_init_residual: start every residual block as the identity.
        **resnet_options: `resnet3d` arguments of the body (see `resnet3d`).
    """
    args = resnet3d_arguments(**resnet_options)
    n = len(args["stage_blocks"])
    c3, c4 = (args["base_channels"] * 2**i * 4 for i in (n - 2, n - 1))
    neck = TPNNeck(c3=c3, c4=c4, width=width or c3, temporal_downsample=temporal_downsample, groups=groups)
    model = ResNet3dTPN(neck=neck, **args)
    model.init_weights(zero_init_residual=zero_init_residual)
    neck.init_weights()
    return model


@register_backbone
def tpn_slowonly_r50(**options: Any) -> ResNet3dTPN:
    """TPN on SlowOnly-R50 (8x8): 2048 features, stage 3 (1024 channels) as debias and aux map."""
    return build_preset(tpn_resnet3d, "tpn_slowonly_r50", SLOWONLY_R50, options)


@register_backbone
def tpn_tiny(**options: Any) -> ResNet3dTPN:
    """TPN on a one-block-per-stage SlowOnly of stem width 8 (256 features, 128-channel aux map)."""
    return build_preset(tpn_resnet3d, "tpn_tiny", {**SLOWONLY_R50, **TINY}, options)

