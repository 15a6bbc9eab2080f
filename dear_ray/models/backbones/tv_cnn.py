"""torchvision's video CNNs as backbones: R3D-18, MC3-18, R(2+1)D-18 (Tran et al., CVPR 2018) and
S3D (Xie et al., ECCV 2018), with torchvision's module names.

One builder a family, built from torchvision's own blocks (`torchvision.models.video.resnet`
`BasicBlock` and conv makers, `torchvision.models.video.s3d` `TemporalSeparableConv` and
`SepInceptionBlock3D`) with the widths as arguments (torchvision's classes fix them), so the tiny
presets are the same networks, narrower. A full preset's state dict has torchvision's keys
(`stem.0.weight`, `layer1.0.conv1.0.weight`, `features.5.branch1.1.0.0.weight`, ...) less the
classifier, so torchvision's weight files load by name (docs/backbones.md).

Maps: the last stage, `(B, C, T', H', W')`; pooled, it is what torchvision's classifier reads
(VideoResNet: global average pool; S3D: a (2, 7, 7) average pool with stride 1, then the mean of
its outputs, which is the global mean when the map is 2 x 7 x 7, i.e. 16 frames at 224).
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from typing import Any

from torch import Tensor, nn
from torchvision.models.video import resnet as tv_resnet
from torchvision.models.video.s3d import SepInceptionBlock3D, TemporalSeparableConv
from torchvision.ops.misc import Conv3dNormActivation

from ._layers import init_resnet_weights
from ._registry import register_backbone
from .output import HEAD_INIT_STD, BackboneOutput
from .resnet3d import build_preset

CONV_MAKERS = {
    "3d": tv_resnet.Conv3DSimple,        # 3x3x3
    "2d": tv_resnet.Conv3DNoTemporal,    # 1x3x3 (MC3's layers 2-4)
    "2plus1d": tv_resnet.Conv2Plus1D,    # 1x3x3 then 3x1x1
}


class VideoResNetBackbone(nn.Module):
    """torchvision's `VideoResNet` without its classifier; built by `video_resnet(...)`.

    `forward_features(x)`: `(B, 3, T, H, W)` -> the last stage `(B, widths[-1], T', H/16, W/16)`
    as the only map and the debias map; T' = T/8 (R3D, R(2+1)D: layers 2-4 halve time), T (MC3:
    its 2D layers keep it).
    """

    def __init__(self, stem: nn.Module, layers: Sequence[nn.Module]) -> None:
        super().__init__()
        self.stem = stem
        for i, layer in enumerate(layers):
            self.add_module(f"layer{i + 1}", layer)
        self.num_layers = len(layers)
        width = layers[-1][-1].conv2[1].num_features  # the last block's last BatchNorm
        self.num_features = self.debias_channels = width
        self.aux_channels = 0
        self.segmental = False
        self.head_init_std = HEAD_INIT_STD

    def forward_features(self, x: Tensor) -> BackboneOutput:
        x = self.stem(x)
        for i in range(self.num_layers):
            x = getattr(self, f"layer{i + 1}")(x)
        return BackboneOutput(maps=(x,), debias_map=x, aux_map=None)

    def forward(self, x: Tensor) -> BackboneOutput:
        return self.forward_features(x)


def _stem(kind: str, width: int, mid: int) -> nn.Sequential:
    """torchvision's `BasicStem` (3x7x7 conv) or `R2Plus1dStem` (1x7x7 to `mid`, then 3x1x1)."""
    if kind == "basic":
        return nn.Sequential(nn.Conv3d(3, width, (3, 7, 7), (1, 2, 2), (1, 3, 3), bias=False),
                             nn.BatchNorm3d(width), nn.ReLU(inplace=True))
    if kind == "2plus1d":
        return nn.Sequential(nn.Conv3d(3, mid, (1, 7, 7), (1, 2, 2), (0, 3, 3), bias=False),
                             nn.BatchNorm3d(mid), nn.ReLU(inplace=True),
                             nn.Conv3d(mid, width, (3, 1, 1), 1, (1, 0, 0), bias=False),
                             nn.BatchNorm3d(width), nn.ReLU(inplace=True))
    raise ValueError(f"video_resnet: stem must be 'basic' or '2plus1d', got {kind!r}")


def _stage(inplanes: int, planes: int, maker: type, blocks: int, stride: int) -> nn.Sequential:
    """torchvision `VideoResNet._make_layer` for BasicBlocks (expansion 1)."""
    downsample = None
    if stride != 1 or inplanes != planes:
        downsample = nn.Sequential(
            nn.Conv3d(inplanes, planes, 1, stride=maker.get_downsample_stride(stride), bias=False),
            nn.BatchNorm3d(planes))
    first = tv_resnet.BasicBlock(inplanes, planes, maker, stride, downsample)
    return nn.Sequential(first, *(tv_resnet.BasicBlock(planes, planes, maker) for _ in range(blocks - 1)))


def video_resnet(*, conv_makers: Sequence[str] = ("3d",) * 4, stem: str = "basic",
                 layers: Sequence[int] = (2, 2, 2, 2), widths: Sequence[int] = (64, 128, 256, 512),
                 stem_mid: int = 45) -> VideoResNetBackbone:
    """Builds torchvision's VideoResNet family with BasicBlocks (R3D-18 by default).

    Args:
        conv_makers: per stage, `3d` (3x3x3), `2d` (1x3x3) or `2plus1d` (factorised).
        stem: `basic` (R3D, MC3) or `2plus1d` (R(2+1)D).
        layers: blocks per stage.
        widths: channels per stage (torchvision: 64, 128, 256, 512).
        stem_mid: channels of the R(2+1)D stem's spatial conv (torchvision: 45).
    """
    if len(conv_makers) != len(layers) or len(widths) != len(layers):
        raise ValueError(f"video_resnet: conv_makers, layers and widths need one entry a stage, got "
                         f"{list(conv_makers)}, {list(layers)}, {list(widths)}")
    unknown = sorted(set(conv_makers) - set(CONV_MAKERS))
    if unknown:
        raise ValueError(f"video_resnet: unknown conv_makers {unknown}; known: {sorted(CONV_MAKERS)}")
    stages, inplanes = [], widths[0]
    for i, (kind, blocks, planes) in enumerate(zip(conv_makers, layers, widths, strict=True)):
        stages.append(_stage(inplanes, planes, CONV_MAKERS[kind], blocks, 1 if i == 0 else 2))
        inplanes = planes
    model = VideoResNetBackbone(_stem(stem, widths[0], stem_mid), stages)
    init_resnet_weights(model)  # torchvision's VideoResNet init: kaiming fan_out, BN 1 / 0
    return model


R3D = dict(conv_makers=("3d",) * 4, stem="basic")
MC3 = dict(conv_makers=("3d", "2d", "2d", "2d"), stem="basic")
R2PLUS1D = dict(conv_makers=("2plus1d",) * 4, stem="2plus1d")
TINY_RESNET = dict(layers=(1, 1, 1, 1), widths=(8, 16, 32, 64), stem_mid=6)


@register_backbone
def r3d_18(**options: Any) -> VideoResNetBackbone:
    """torchvision's R3D-18 (`R3D_18_Weights.KINETICS400_V1`), 512 features. Not `r3d18_a`
    (SDN's 3D-ResNet-18 with type-A shortcuts)."""
    return build_preset(video_resnet, "r3d_18", R3D, options)


@register_backbone
def mc3_18(**options: Any) -> VideoResNetBackbone:
    """torchvision's MC3-18 (3D convs in the stem and layer 1, 2D in layers 2-4), 512 features."""
    return build_preset(video_resnet, "mc3_18", MC3, options)


@register_backbone
def r2plus1d_18(**options: Any) -> VideoResNetBackbone:
    """torchvision's R(2+1)D-18, 512 features."""
    return build_preset(video_resnet, "r2plus1d_18", R2PLUS1D, options)


@register_backbone
def r3d_18_tiny(**options: Any) -> VideoResNetBackbone:
    """R3D-18's builder with one block a stage and widths 8-64 (64 features)."""
    return build_preset(video_resnet, "r3d_18_tiny", {**R3D, **TINY_RESNET}, options)


@register_backbone
def mc3_18_tiny(**options: Any) -> VideoResNetBackbone:
    """MC3-18's builder with one block a stage and widths 8-64 (64 features)."""
    return build_preset(video_resnet, "mc3_18_tiny", {**MC3, **TINY_RESNET}, options)


@register_backbone
def r2plus1d_18_tiny(**options: Any) -> VideoResNetBackbone:
    """R(2+1)D-18's builder with one block a stage and widths 8-64 (64 features)."""
    return build_preset(video_resnet, "r2plus1d_18_tiny", {**R2PLUS1D, **TINY_RESNET}, options)


# torchvision S3D.features: the stem widths, then the inception blocks' (b0, b1_mid, b1, b2_mid,
# b2, b3) widths, "pool" marking the max-pools between them
S3D_STEM = (64, 64, 192)
S3D_BLOCKS = ((64, 96, 128, 16, 32, 32), (128, 128, 192, 32, 96, 64), "pool",
              (192, 96, 208, 16, 48, 64), (160, 112, 224, 24, 64, 64), (128, 128, 256, 24, 64, 64),
              (112, 144, 288, 32, 64, 64), (256, 160, 320, 32, 128, 128), "pool",
              (256, 160, 320, 32, 128, 128), (384, 192, 384, 48, 128, 128))
S3D_POOLS = ((3, 3, 3), (2, 2, 2))  # the two max-pools' kernels (stride 2, padding 1 then 0)


class S3DBackbone(nn.Module):
    """torchvision's `S3D` without its pooling and classifier; built by `s3d_net(...)`.

    `forward_features(x)`: `(B, 3, T, H, W)` -> `(B, C, T/8, H/32, W/32)` as the only map and the
    debias map.
    """

    def __init__(self, features: nn.Sequential, channels: int) -> None:
        super().__init__()
        self.features = features
        self.num_features = self.debias_channels = channels
        self.aux_channels = 0
        self.segmental = False
        self.head_init_std = HEAD_INIT_STD

    def forward_features(self, x: Tensor) -> BackboneOutput:
        x = self.features(x)
        return BackboneOutput(maps=(x,), debias_map=x, aux_map=None)

    def forward(self, x: Tensor) -> BackboneOutput:
        return self.forward_features(x)


def s3d_net(*, width_div: int = 1) -> S3DBackbone:
    """Builds torchvision's S3D feature extractor with every width divided by `width_div`
    (rounded up): 1 gives torchvision's network (1024 features)."""
    if not isinstance(width_div, int) or width_div < 1:
        raise ValueError(f"s3d_net: width_div must be a positive integer, got {width_div!r}")

    def w(c: int) -> int:
        return -(-c // width_div)

    norm = partial(nn.BatchNorm3d, eps=0.001, momentum=0.001)  # torchvision S3D's norm_layer
    c0, c1, c2 = (w(c) for c in S3D_STEM)
    layers: list[nn.Module] = [
        TemporalSeparableConv(3, c0, 7, 2, 3, norm),
        nn.MaxPool3d((1, 3, 3), (1, 2, 2), (0, 1, 1)),
        Conv3dNormActivation(c0, c1, kernel_size=1, stride=1, norm_layer=norm),
        TemporalSeparableConv(c1, c2, 3, 1, 1, norm),
        nn.MaxPool3d((1, 3, 3), (1, 2, 2), (0, 1, 1)),
    ]
    channels, pools = c2, iter(S3D_POOLS)
    for block in S3D_BLOCKS:
        if block == "pool":
            kernel = next(pools)
            layers.append(nn.MaxPool3d(kernel, 2, 1 if kernel[0] == 3 else 0))
            continue
        b0, b1m, b1, b2m, b2, b3 = (w(c) for c in block)
        layers.append(SepInceptionBlock3D(channels, b0, b1m, b1, b2m, b2, b3, norm))
        channels = b0 + b1 + b2 + b3
    return S3DBackbone(nn.Sequential(*layers), channels)


@register_backbone
def s3d(**options: Any) -> S3DBackbone:
    """torchvision's S3D (`S3D_Weights.KINETICS400_V1`), 1024 features."""
    return build_preset(s3d_net, "s3d", {}, options)


@register_backbone
def s3d_tiny(**options: Any) -> S3DBackbone:
    """S3D with every width / 16 (64 features)."""
    return build_preset(s3d_net, "s3d_tiny", {"width_div": 16}, options)
