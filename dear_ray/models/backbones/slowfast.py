"""SlowFast-R50 (Feichtenhofer et al. 2019) as MMAction2's `ResNet3dSlowFast`: two `resnet3d` pathways.

The slow pathway sees every `resample_rate`-th frame (tau), the fast pathway every
`resample_rate // speed_ratio`-th (tau / alpha) with `1 / channel_ratio` of the width; after the stem
and after stages 1-3 a time-strided (fusion_kernel, 1, 1) conv maps the fast features onto the slow
frame rate and they are concatenated to the slow features. Keys: `slow_path.*`, `fast_path.*`,
`slow_path.conv1_lateral.conv.weight`, `slow_path.layer1_lateral.conv.weight`, ...
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from ._registry import register_backbone
from .output import HEAD_INIT_STD, BackboneOutput
from .resnet3d import ResNet3d, build_preset, resnet3d


class ResNet3dSlowFast(nn.Module):
    """Runs the slow and fast pathways with lateral connections.

    Args:
        slow_path: a `ResNet3d` built with `lateral=True`.
        fast_path: a `ResNet3d` without laterals, `channel_ratio` times narrower.
        resample_rate: tau, the slow pathway's frame stride on the input clip.
        speed_ratio: alpha, how many more frames the fast pathway sees.
    """

    def __init__(self, slow_path: ResNet3d, fast_path: ResNet3d, *, resample_rate: int, speed_ratio: int) -> None:
        super().__init__()
        if resample_rate % speed_ratio != 0:
            raise ValueError(
                f"resample_rate (tau={resample_rate}) must be a multiple of speed_ratio (alpha={speed_ratio})"
            )
        self.slow_path = slow_path
        self.fast_path = fast_path
        self.resample_rate = resample_rate
        self.speed_ratio = speed_ratio
        self.num_features = slow_path.num_features + fast_path.num_features
        self.debias_channels = slow_path.num_features
        self.aux_channels = 0
        self.segmental = False
        self.head_init_std = HEAD_INIT_STD

    def sample_pathways(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Splits a clip `(B, 3, T, H, W)` into the slow input (frames 0, tau, 2 tau, ...) and the fast
        input (frames 0, tau/alpha, ...). Same frames as MMAction2's nearest-neighbour interpolation."""
        if x.dim() != 5:
            raise ValueError(f"SlowFast expects clips (B, 3, T, H, W), got shape {tuple(x.shape)}")
        t = x.shape[2]
        if t < self.resample_rate:
            raise ValueError(f"SlowFast needs at least resample_rate={self.resample_rate} frames, got {t}")
        tau, fast_stride = self.resample_rate, self.resample_rate // self.speed_ratio
        # floor(T / stride) frames, as F.interpolate(scale_factor=1/stride, mode="nearest") keeps
        return x[:, :, : t // tau * tau : tau], x[:, :, : t // fast_stride * fast_stride : fast_stride]

    def forward_features(self, x: Tensor) -> BackboneOutput:
        """`x` `(B, 3, T, H, W)` -> maps (fast `(B, 256, T*alpha/tau, H/32, W/32)`, slow `(B, 2048,
        T/tau, ...)`); debias_map is the slow map.

        The maps are FAST-first: MMAction2 0.x's (and 1.x's) SlowFastHead and DEAR's SlowFast heads
        unpack the backbone's `(x_slow, x_fast)` as `x_fast, x_slow = x` and concatenate
        `(x_slow, x_fast)`, i.e. the fast pathway's pooled features come first, so a zoo
        checkpoint's `fc_cls.weight` columns are `[fast (256) | slow (2048)]`.
        """
        slow, fast = self.sample_pathways(x)
        sp, fp = self.slow_path, self.fast_path
        slow = sp.maxpool(sp.conv1(slow))
        fast = fp.maxpool(fp.conv1(fast))
        slow = torch.cat((slow, sp.conv1_lateral(fast)), dim=1)
        for i, name in enumerate(sp.res_layers):
            slow = getattr(sp, name)(slow)
            fast = getattr(fp, name)(fast)
            if i < len(sp.res_layers) - 1:
                slow = torch.cat((slow, getattr(sp, f"{name}_lateral")(fast)), dim=1)
        return BackboneOutput(maps=(fast, slow), debias_map=slow, aux_map=None)

    def forward(self, x: Tensor) -> BackboneOutput:
        return self.forward_features(x)


def slowfast(
    *,
    resample_rate: int = 8,
    speed_ratio: int = 8,
    channel_ratio: int = 8,
    fusion_kernel: int = 5,
    stage_blocks: tuple[int, ...] = (3, 4, 6, 3),
    base_channels: int = 64,
    in_channels: int = 3,
    zero_init_residual: bool = True,
) -> ResNet3dSlowFast:
    """Builds SlowFast from two `resnet3d` pathways (MMAction2 configs/_base_/models/slowfast_r50.py).

    Args:
        resample_rate: tau, slow pathway frame stride.
        speed_ratio: alpha, fast/slow frame-rate ratio (also the lateral convs' temporal stride).
        channel_ratio: 1/beta, slow/fast width ratio.
        fusion_kernel: temporal kernel of the lateral convs.
        stage_blocks: blocks per stage, both pathways.
        base_channels: slow pathway stem width; the fast one has `base_channels // channel_ratio`.
        in_channels: input channels.
        zero_init_residual: start every block as the identity.
    """
    if base_channels % channel_ratio != 0:
        raise ValueError(f"base_channels={base_channels} must be divisible by channel_ratio={channel_ratio}")
    common = dict(stage_blocks=stage_blocks, in_channels=in_channels, conv1_stride_t=1, pool1_stride_t=1,
                  with_pool2=False, zero_init_residual=zero_init_residual)
    slow_path = resnet3d(
        **common,
        base_channels=base_channels,
        conv1_kernel=(1, 7, 7),
        inflate=(0, 0, 1, 1),
        lateral=True,
        speed_ratio=speed_ratio,
        channel_ratio=channel_ratio,
        fusion_kernel=fusion_kernel,
    )
    fast_path = resnet3d(
        **common,
        base_channels=base_channels // channel_ratio,
        conv1_kernel=(5, 7, 7),
        inflate=(1, 1, 1, 1),
    )
    return ResNet3dSlowFast(slow_path, fast_path, resample_rate=resample_rate, speed_ratio=speed_ratio)


@register_backbone
def slowfast_r50(**options: Any) -> ResNet3dSlowFast:
    """SlowFast-R50 4x16 (tau 8, alpha 8, 1/beta 8, lateral kernel 5; 32-frame input at interval 2)."""
    return build_preset(slowfast, "slowfast_r50", {}, options)


@register_backbone
def slowfast_r50_8x8(**options: Any) -> ResNet3dSlowFast:
    """SlowFast-R50 8x8 (tau 4, alpha 4, 1/beta 8, lateral kernel 7)."""
    preset = dict(resample_rate=4, speed_ratio=4, fusion_kernel=7)
    return build_preset(slowfast, "slowfast_r50_8x8", preset, options)


@register_backbone
def slowfast_tiny(**options: Any) -> ResNet3dSlowFast:
    """SlowFast with one block per stage, slow width 8, fast width 2, tau 4, alpha 4 (320 features)."""
    preset = dict(resample_rate=4, speed_ratio=4, channel_ratio=4, stage_blocks=(1, 1, 1, 1), base_channels=8)
    return build_preset(slowfast, "slowfast_tiny", preset, options)
