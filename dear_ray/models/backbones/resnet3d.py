"""ResNet3d-50 and its presets: I3D-R50, SlowOnly-R50, and the pathways of SlowFast (MMAction2 layout).

One `ResNet3d` module built by `resnet3d(...)`; `i3d_r50`, `slowonly_r50` and the tiny presets are
argument sets of that builder (STYLE principle 2), as are SlowFast's two pathways (`slowfast.py`) and
TPN's body (`tpn.py`). Parameter names follow MMAction2's `ResNet3d`/`ResNet3dPathway`
(`conv1.conv.weight`, `layer1.0.conv1.bn.weight`, `layer1.0.downsample.conv.weight`,
`layer1_lateral.conv.weight`), so MMAction2 and DEAR checkpoints load without renaming.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from typing import Any

from torch import Tensor, nn

from ._layers import ConvModule, init_resnet_weights
from ._registry import register_backbone
from .output import HEAD_INIT_STD, BackboneOutput


class Bottleneck3d(nn.Module):
    """1x1 -> 3x3 -> 1x1 residual block; `inflate` adds a temporal extent of 3 ("pytorch" style).

    Args:
        inplanes: input channels.
        planes: bottleneck width; the block outputs `4 * planes` channels.
        spatial_stride: stride of the 3x3 conv (and of the shortcut).
        temporal_stride: temporal stride of the 3x3 conv (and of the shortcut).
        inflate: use a 3-frame kernel in this block.
        inflate_style: "3x1x1" (conv1 becomes 3x1x1, the I3D/SlowOnly way) or "3x3x3" (conv2 becomes
            3x3x3).
        downsample: the projection shortcut, or None for the identity.
    """

    expansion = 4

    def __init__(
        self,
        inplanes: int,
        planes: int,
        *,
        spatial_stride: int = 1,
        temporal_stride: int = 1,
        inflate: bool = True,
        inflate_style: str = "3x1x1",
        downsample: nn.Module | None = None,
    ) -> None:
        super().__init__()
        if inflate_style not in ("3x1x1", "3x3x3"):
            raise ValueError(f"inflate_style must be '3x1x1' or '3x3x3', got {inflate_style!r}")
        k1, p1, k2, p2 = (1, 1, 1), (0, 0, 0), (1, 3, 3), (0, 1, 1)
        if inflate and inflate_style == "3x1x1":
            k1, p1 = (3, 1, 1), (1, 0, 0)
        elif inflate:
            k2, p2 = (3, 3, 3), (1, 1, 1)
        self.conv1 = ConvModule(inplanes, planes, k1, 1, p1)
        self.conv2 = ConvModule(
            planes, planes, k2, (temporal_stride, spatial_stride, spatial_stride), p2
        )
        self.conv3 = ConvModule(planes, planes * self.expansion, 1, act=False)
        self.downsample = downsample
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        return self.relu(self.conv3(self.conv2(self.conv1(x))) + identity)


def _per_block(value: int | Sequence[int], num_blocks: int, what: str, stage: int) -> list[int]:
    if isinstance(value, int):
        return [value] * num_blocks
    if len(value) != num_blocks:
        raise ValueError(
            f"{what} of stage {stage + 1} has {len(value)} entries {tuple(value)}, "
            f"expected one per block ({num_blocks})"
        )
    return [int(v) for v in value]


class ResNet3d(nn.Module):
    """A 3D ResNet-50-style network: stem conv1 + max-pool, four bottleneck stages.

    Built by `resnet3d(...)`; see there for the arguments. Input `(B, C_in, T, H, W)`; the output of
    stage 4 has `num_features` channels.

    With `lateral=True` it is SlowFast's slow pathway: it owns the time-strided lateral convs
    `conv1_lateral`, `layer{1,2,3}_lateral` that read the fast pathway, and each stage's input is
    widened by the lateral channels. `forward_features` is then meaningless on its own (SlowFast
    drives the pathways).
    """

    def __init__(
        self,
        *,
        stage_blocks: Sequence[int],
        base_channels: int,
        in_channels: int,
        conv1_kernel: Sequence[int],
        conv1_stride_t: int,
        pool1_stride_t: int,
        with_pool2: bool,
        inflate: Sequence[int | Sequence[int]],
        inflate_style: str,
        spatial_strides: Sequence[int],
        temporal_strides: Sequence[int],
        lateral: bool,
        speed_ratio: int,
        channel_ratio: int,
        fusion_kernel: int,
    ) -> None:
        super().__init__()
        n = len(stage_blocks)
        for name, seq in (("inflate", inflate), ("spatial_strides", spatial_strides),
                          ("temporal_strides", temporal_strides)):
            if len(seq) != n:
                raise ValueError(f"{name}={tuple(seq)} needs one entry per stage ({n} stages)")
        self.with_pool2 = with_pool2
        self.lateral = lateral
        self.conv1 = ConvModule(
            in_channels,
            base_channels,
            tuple(conv1_kernel),
            (conv1_stride_t, 2, 2),
            tuple((k - 1) // 2 for k in conv1_kernel),
        )
        self.maxpool = nn.MaxPool3d((1, 3, 3), (pool1_stride_t, 2, 2), (0, 1, 1))
        self.pool2 = nn.MaxPool3d((2, 1, 1), (2, 1, 1))

        # the slow pathway's input to stage i is widened by 2 * (fast channels) = 2 * ch // ratio
        def lateral_conv(channels: int) -> ConvModule:
            return ConvModule(
                channels // channel_ratio,
                channels * 2 // channel_ratio,
                (fusion_kernel, 1, 1),
                (speed_ratio, 1, 1),
                ((fusion_kernel - 1) // 2, 0, 0),
                norm=False,
                act=False,
            )

        if lateral:
            self.conv1_lateral = lateral_conv(base_channels)
        self.res_layers: list[str] = []
        inplanes = base_channels
        residual_bns = []
        for i, num_blocks in enumerate(stage_blocks):
            planes = base_channels * 2**i
            lateral_in = inplanes * 2 // channel_ratio if lateral else 0
            layer = self._make_layer(
                inplanes + lateral_in,
                planes,
                _per_block(inflate[i], num_blocks, "inflate", i),
                spatial_stride=spatial_strides[i],
                temporal_stride=temporal_strides[i],
                inflate_style=inflate_style,
            )
            self.add_module(f"layer{i + 1}", layer)
            self.res_layers.append(f"layer{i + 1}")
            residual_bns += [block.conv3.bn for block in layer]
            inplanes = planes * Bottleneck3d.expansion
            if lateral and i < n - 1:
                self.add_module(f"layer{i + 1}_lateral", lateral_conv(inplanes))
        self.stage_channels = [base_channels * 2**i * Bottleneck3d.expansion for i in range(n)]
        self.num_features = self.stage_channels[-1]
        self.debias_channels = self.num_features
        self.aux_channels = 0
        self.segmental = False
        self.head_init_std = HEAD_INIT_STD
        self._residual_bns = residual_bns

    @staticmethod
    def _make_layer(
        inplanes: int,
        planes: int,
        inflate: list[int],
        *,
        spatial_stride: int,
        temporal_stride: int,
        inflate_style: str,
    ) -> nn.Sequential:
        out = planes * Bottleneck3d.expansion
        downsample = None
        if spatial_stride != 1 or temporal_stride != 1 or inplanes != out:
            downsample = ConvModule(
                inplanes, out, 1, (temporal_stride, spatial_stride, spatial_stride), act=False
            )
        blocks = []
        for j, inf in enumerate(inflate):
            first = j == 0
            blocks.append(
                Bottleneck3d(
                    inplanes if first else out,
                    planes,
                    spatial_stride=spatial_stride if first else 1,
                    temporal_stride=temporal_stride if first else 1,
                    inflate=bool(inf),
                    inflate_style=inflate_style,
                    downsample=downsample if first else None,
                )
            )
        return nn.Sequential(*blocks)

    def init_weights(self, *, zero_init_residual: bool) -> None:
        """Kaiming convs, BN 1/0; optionally the last BN of every block at 0 (MMAction2's default)."""
        init_resnet_weights(self, zero_init_residual_bns=self._residual_bns if zero_init_residual else ())

    def forward_stages(self, x: Tensor) -> list[Tensor]:
        """Runs the stem and the four stages on `x` `(B, C_in, T, H, W)`; returns each stage's output."""
        x = self.maxpool(self.conv1(x))
        outs = []
        for i, name in enumerate(self.res_layers):
            x = getattr(self, name)(x)
            if i == 0 and self.with_pool2:
                x = self.pool2(x)
            outs.append(x)
        return outs

    def forward_features(self, x: Tensor) -> BackboneOutput:
        """`x` `(B, 3, T, H, W)` -> stage-4 map `(B, num_features, T', H/32, W/32)` as maps and debias_map."""
        if self.lateral:
            raise RuntimeError("a lateral ResNet3d is a SlowFast pathway; run it through ResNet3dSlowFast")
        out = self.forward_stages(x)[-1]
        return BackboneOutput(maps=(out,), debias_map=out, aux_map=None)

    def forward(self, x: Tensor) -> BackboneOutput:
        return self.forward_features(x)


def resnet3d(
    *,
    stage_blocks: Sequence[int] = (3, 4, 6, 3),
    base_channels: int = 64,
    in_channels: int = 3,
    conv1_kernel: Sequence[int] = (3, 7, 7),
    conv1_stride_t: int = 1,
    pool1_stride_t: int = 1,
    with_pool2: bool = True,
    inflate: Sequence[int | Sequence[int]] = (1, 1, 1, 1),
    inflate_style: str = "3x1x1",
    spatial_strides: Sequence[int] = (1, 2, 2, 2),
    temporal_strides: Sequence[int] = (1, 1, 1, 1),
    lateral: bool = False,
    speed_ratio: int = 8,
    channel_ratio: int = 8,
    fusion_kernel: int = 5,
    zero_init_residual: bool = True,
) -> ResNet3d:
    """Builds a ResNet3d (MMAction2's `ResNet3d`/`ResNet3dPathway` arguments, bottleneck blocks).

    Args:
        stage_blocks: blocks per stage; (3, 4, 6, 3) is ResNet-50.
        base_channels: stem width; stage i has width `base_channels * 2**i`, output 4x that.
        in_channels: input channels (3 for RGB).
        conv1_kernel: stem kernel `(t, h, w)`; spatial stride is 2.
        conv1_stride_t: temporal stride of the stem conv.
        pool1_stride_t: temporal stride of the stem max-pool (kernel (1, 3, 3), spatial stride 2).
        with_pool2: temporal max-pool (2, 1, 1)/2 after stage 1 (I3D).
        inflate: per stage, an int for all blocks or one int per block: 1 = 3-frame kernel.
        inflate_style: "3x1x1" or "3x3x3".
        spatial_strides: stride of each stage's first block.
        temporal_strides: temporal stride of each stage's first block.
        lateral: build SlowFast's slow-pathway lateral convs (see `ResNet3d`).
        speed_ratio: SlowFast alpha, the lateral convs' temporal stride.
        channel_ratio: SlowFast 1/beta, the fast pathway is this many times narrower.
        fusion_kernel: temporal kernel of the lateral convs (5 for 4x16, 7 for 8x8).
        zero_init_residual: start every block as the identity (last BN weight 0).
    """
    model = ResNet3d(**resnet3d_arguments(
        stage_blocks=stage_blocks,
        base_channels=base_channels,
        in_channels=in_channels,
        conv1_kernel=conv1_kernel,
        conv1_stride_t=conv1_stride_t,
        pool1_stride_t=pool1_stride_t,
        with_pool2=with_pool2,
        inflate=inflate,
        inflate_style=inflate_style,
        spatial_strides=spatial_strides,
        temporal_strides=temporal_strides,
        lateral=lateral,
        speed_ratio=speed_ratio,
        channel_ratio=channel_ratio,
        fusion_kernel=fusion_kernel,
    ))
    model.init_weights(zero_init_residual=zero_init_residual)
    return model


def resnet3d_arguments(**options: Any) -> dict[str, Any]:
    """`ResNet3d`'s constructor arguments: `options` over `resnet3d`'s defaults (for subclasses)."""
    params = inspect.signature(resnet3d).parameters
    args = {k: p.default for k, p in params.items() if k != "zero_init_residual"}
    unknown = sorted(set(options) - set(args))
    if unknown:
        raise TypeError(f"unknown ResNet3d option(s) {unknown}; allowed: {', '.join(sorted(args))}")
    return {**args, **options}


def build_preset(
    builder: Callable[..., nn.Module], name: str, preset: dict[str, Any], options: dict[str, Any]
) -> nn.Module:
    """Calls `builder(**{**preset, **options})`, naming the preset on an unknown option."""
    params = inspect.signature(builder).parameters
    allowed = {k for k, p in params.items() if p.kind is not p.VAR_KEYWORD}
    open_ended = any(p.kind is p.VAR_KEYWORD for p in params.values())  # the builder checks the rest
    unknown = sorted(set(options) - allowed)
    if unknown and not open_ended:
        raise TypeError(
            f"backbone {name!r} got unknown option(s) {unknown}; allowed: {', '.join(sorted(allowed))}"
        )
    return builder(**{**preset, **options})


# MMAction2 configs/_base_/models/i3d_r50.py
I3D_R50 = dict(
    conv1_kernel=(5, 7, 7),
    conv1_stride_t=2,
    pool1_stride_t=2,
    with_pool2=True,
    inflate=((1, 1, 1), (1, 0, 1, 0), (1, 0, 1, 0, 1, 0), (0, 1, 0)),
    inflate_style="3x1x1",
    zero_init_residual=False,
)
# MMAction2 configs/_base_/models/slowonly_r50.py (ResNet3dSlowOnly defaults)
SLOWONLY_R50 = dict(
    conv1_kernel=(1, 7, 7),
    conv1_stride_t=1,
    pool1_stride_t=1,
    with_pool2=False,
    inflate=(0, 0, 1, 1),
)
TINY = dict(stage_blocks=(1, 1, 1, 1), base_channels=8)


@register_backbone
def i3d_r50(**options: Any) -> ResNet3d:
    """I3D-R50: conv1 (5,7,7)/(2,2,2), pool1 /(2,2,2), pool2 after layer 1, 3x1x1 inflation."""
    return build_preset(resnet3d, "i3d_r50", I3D_R50, options)


@register_backbone
def slowonly_r50(**options: Any) -> ResNet3d:
    """SlowOnly-R50: conv1 (1,7,7), no temporal striding, inflated stages 3 and 4 only."""
    return build_preset(resnet3d, "slowonly_r50", SLOWONLY_R50, options)


@register_backbone
def i3d_tiny(**options: Any) -> ResNet3d:
    """I3D with one block per stage and 8 stem channels (256 features), for tests."""
    preset = {**I3D_R50, **TINY, "inflate": (1, 0, 1, 1)}
    return build_preset(resnet3d, "i3d_tiny", preset, options)
