"""TSM-R50 (Lin et al. 2019) as MMAction2's `ResNetTSM`: a 2D ResNet-50 with residual temporal shift.

The clip `(B, 3, T, H, W)` is folded to `(B*T, 3, H, W)` frames; inside every block's residual
branch, before conv1, 1/shift_div of the channels move one frame back in time and another
1/shift_div one frame forward ("blockres" placement). MMAction2 wraps the conv of conv1, so keys
read `layer1.0.conv1.conv.net.weight` (the BN stays `layer1.0.conv1.bn.weight`).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from ._layers import ConvModule, init_resnet_weights
from ._registry import register_backbone
from .output import TSM_HEAD_INIT_STD, BackboneOutput
from .resnet3d import build_preset


def temporal_shift(x: Tensor, num_segments: int, shift_div: int = 8) -> Tensor:
    """Shifts channels along time, zero-filling at the clip ends (TSM's bidirectional shift).

    Args:
        x: `(N*T, C, H, W)` frames, the T frames of each clip consecutive.
        num_segments: T.
        shift_div: with `fold = C // shift_div`, channels `[0, fold)` take the NEXT frame's values
            (output frame t = input frame t+1, last frame zeros), channels `[fold, 2 fold)` the PREVIOUS
            frame's (t = t-1, first frame zeros); the rest are unchanged.

    Returns:
        `(N*T, C, H, W)`.
    """
    nt, c, h, w = x.shape
    if nt % num_segments != 0:
        raise ValueError(f"temporal_shift: {nt} frames is not a multiple of num_segments={num_segments}")
    x = x.view(nt // num_segments, num_segments, c, h, w)
    fold = c // shift_div
    out = torch.zeros_like(x)
    out[:, :-1, :fold] = x[:, 1:, :fold]
    out[:, 1:, fold : 2 * fold] = x[:, :-1, fold : 2 * fold]
    out[:, :, 2 * fold :] = x[:, :, 2 * fold :]
    return out.view(nt, c, h, w)


class TemporalShift(nn.Module):
    """Applies `temporal_shift` and then the wrapped module `net` (MMAction2's `TemporalShift`)."""

    def __init__(self, net: nn.Module, *, num_segments: int, shift_div: int) -> None:
        super().__init__()
        self.net = net
        self.num_segments = num_segments
        self.shift_div = shift_div

    def forward(self, x: Tensor) -> Tensor:
        return self.net(temporal_shift(x, self.num_segments, self.shift_div))


class Bottleneck2d(nn.Module):
    """2D bottleneck, stride on the 3x3 conv; the shift wraps `conv1.conv` (residual branch only)."""

    expansion = 4

    def __init__(self, inplanes: int, planes: int, *, stride: int, downsample: nn.Module | None,
                 num_segments: int, shift_div: int) -> None:
        super().__init__()
        self.conv1 = ConvModule(inplanes, planes, 1, dims=2)
        self.conv1.conv = TemporalShift(self.conv1.conv, num_segments=num_segments, shift_div=shift_div)
        self.conv2 = ConvModule(planes, planes, 3, stride, 1, dims=2)
        self.conv3 = ConvModule(planes, planes * self.expansion, 1, dims=2, act=False)
        self.downsample = downsample
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        return self.relu(self.conv3(self.conv2(self.conv1(x))) + identity)


class ResNetTSM(nn.Module):
    """2D ResNet with temporal shift; built by `resnet_tsm(...)`.

    `forward_features(x)` takes `(B, 3, T, H, W)` with `T == num_segments` and returns the last
    stage as `(B, num_features, T, H/32, W/32)` (frames unfolded back into time), also as debias_map.
    """

    def __init__(self, *, stage_blocks: tuple[int, ...], base_channels: int, in_channels: int,
                 num_segments: int, shift_div: int) -> None:
        super().__init__()
        if num_segments < 1 or shift_div < 1:
            raise ValueError(f"num_segments and shift_div must be >= 1, got {num_segments}, {shift_div}")
        self.num_segments = num_segments
        self.conv1 = ConvModule(in_channels, base_channels, 7, 2, 3, dims=2)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        inplanes = base_channels
        self.res_layers = []
        for i, num_blocks in enumerate(stage_blocks):
            planes, stride = base_channels * 2**i, 1 if i == 0 else 2
            out = planes * Bottleneck2d.expansion
            downsample = None
            if stride != 1 or inplanes != out:
                downsample = ConvModule(inplanes, out, 1, stride, dims=2, act=False)
            blocks = [
                Bottleneck2d(inplanes if j == 0 else out, planes, stride=stride if j == 0 else 1,
                             downsample=downsample if j == 0 else None,
                             num_segments=num_segments, shift_div=shift_div)
                for j in range(num_blocks)
            ]
            self.add_module(f"layer{i + 1}", nn.Sequential(*blocks))
            self.res_layers.append(f"layer{i + 1}")
            inplanes = out
        self.num_features = inplanes
        self.debias_channels = inplanes
        self.aux_channels = 0
        self.segmental = True  # MMAction2's TSMHead: dropout and fc per segment, then consensus
        self.head_init_std = TSM_HEAD_INIT_STD

    def forward_features(self, x: Tensor) -> BackboneOutput:
        if x.dim() != 5 or x.shape[2] != self.num_segments:
            raise ValueError(
                f"TSM expects clips (B, C, T={self.num_segments}, H, W) (T = num_segments), "
                f"got shape {tuple(x.shape)}"
            )
        b, c, t, h, w = x.shape
        x = x.transpose(1, 2).reshape(b * t, c, h, w)
        x = self.maxpool(self.conv1(x))
        for name in self.res_layers:
            x = getattr(self, name)(x)
        _, c_out, h_out, w_out = x.shape
        out = x.view(b, t, c_out, h_out, w_out).transpose(1, 2)
        return BackboneOutput(maps=(out,), debias_map=out, aux_map=None)

    def forward(self, x: Tensor) -> BackboneOutput:
        return self.forward_features(x)


def resnet_tsm(*, stage_blocks: tuple[int, ...] = (3, 4, 6, 3), base_channels: int = 64, in_channels: int = 3,
               num_segments: int = 8, shift_div: int = 8) -> ResNetTSM:
    """Builds a TSM ResNet (MMAction2 configs/_base_/models/tsm_r50.py).

    Args:
        stage_blocks: blocks per stage; (3, 4, 6, 3) is ResNet-50.
        base_channels: stem width.
        in_channels: input channels.
        num_segments: frames per clip T (the input's T must equal it).
        shift_div: 1/shift_div of the channels shift each way (8: 1/8 back, 1/8 forward).
    """
    model = ResNetTSM(stage_blocks=stage_blocks, base_channels=base_channels, in_channels=in_channels,
                      num_segments=num_segments, shift_div=shift_div)
    init_resnet_weights(model)  # MMAction2's 2D ResNet: kaiming convs, BN 1, no zero-init
    return model


@register_backbone
def tsm_r50(**options: Any) -> ResNetTSM:
    """TSM-R50, 8 segments, shift 1/8 each way."""
    return build_preset(resnet_tsm, "tsm_r50", {}, options)


@register_backbone
def tsm_tiny(**options: Any) -> ResNetTSM:
    """TSM with one block per stage and 8 stem channels (256 features), 8 segments."""
    return build_preset(resnet_tsm, "tsm_tiny", dict(stage_blocks=(1, 1, 1, 1), base_channels=8), options)
