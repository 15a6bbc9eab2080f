"""torchvision's video transformers as backbones: MViT v1-B / v2-S (Fan et al., ICCV 2021; Li et
al., CVPR 2022) and Video Swin T / S / B (Liu et al., CVPR 2022).

The networks are torchvision's own (`torchvision.models.video.mvit`, `.swin_transformer`), built
by torchvision's builders (full presets) or classes (tiny presets); the backbone adopts every
child but the classifier, so its keys are torchvision's (`conv_proj.weight`, `blocks.0.attn.qkv.
weight`, `patch_embed.proj.weight`, `features.0.0.attn.relative_position_bias_table`, ...) and
torchvision's weight files load by name. MMAction2's Video Swin checkpoints load through a key
map (`dear_ray.models.backbones.weights`).

Maps (docs/backbones.md):
- MViT: the final tokens after `norm`, class token dropped, reshaped to `(B, C, T', H', W')`
  (T/2, H/32, W/32); torchvision's classifier reads the class token instead, so the pooled
  feature is the mean patch token. MViT's positional embeddings fix the input size
  (`temporal_size` frames, `spatial_size` pixels, 16 x 224 x 224 for the published weights).
- Swin: the output of the last stage after `norm`, `(B, C, T/2, H/32, W/32)`; pooled, it is
  exactly what torchvision's (and MMAction2's I3DHead) classifier reads. Any input size.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn
from torchvision.models import video as tv
from torchvision.models.video.mvit import MSBlockConfig, MViT

from ._registry import register_backbone
from .output import HEAD_INIT_STD, BackboneOutput


def _check_options(name: str, options: dict[str, Any], allowed: tuple[str, ...]) -> None:
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise TypeError(f"backbone {name!r} got unknown option(s) {unknown}; allowed: "
                        f"{', '.join(sorted(allowed))}")


class MViTBackbone(nn.Module):
    """A torchvision `MViT` without its classifier: `conv_proj`, `pos_encoding`, `blocks`, `norm`.

    `forward_features(x)`: `(B, 3, T, H, W)` with T, H, W the sizes it was built for ->
    `(B, C, T/2, H/32, W/32)` as the only map and the debias map.
    """

    def __init__(self, net: MViT) -> None:
        super().__init__()
        self.conv_proj = net.conv_proj
        self.pos_encoding = net.pos_encoding
        self.blocks = net.blocks
        self.norm = net.norm
        self.num_features = self.debias_channels = net.norm.normalized_shape[0]
        self.aux_channels = 0
        self.segmental = False
        self.head_init_std = HEAD_INIT_STD
        stride = self.conv_proj.stride
        pos = self.pos_encoding
        self.input_size = (pos.temporal_size * stride[0], pos.spatial_size[0] * stride[1],
                           pos.spatial_size[1] * stride[2])

    def forward_features(self, x: Tensor) -> BackboneOutput:
        if tuple(x.shape[2:]) != self.input_size:
            t, h, w = self.input_size
            raise ValueError(f"MViT was built for clips of {t} frames at {h}x{w} (its positional "
                             f"embeddings fix the size; backbone_options temporal_size / "
                             f"spatial_size), got clips {tuple(x.shape)}")
        x = self.conv_proj(x).flatten(2).transpose(1, 2)  # (B, THW, C), as MViT.forward
        x = self.pos_encoding(x)
        thw = (self.pos_encoding.temporal_size, *self.pos_encoding.spatial_size)
        for block in self.blocks:
            x, thw = block(x, thw)
        tokens = self.norm(x)[:, 1:]  # drop the class token
        maps = tokens.transpose(1, 2).reshape(x.shape[0], -1, *thw)
        return BackboneOutput(maps=(maps,), debias_map=maps, aux_map=None)

    def forward(self, x: Tensor) -> BackboneOutput:
        return self.forward_features(x)


MVIT_OPTIONS = ("temporal_size", "spatial_size", "stochastic_depth_prob", "attention_dropout")


def _mvit_preset(name: str, builder: Any, options: dict[str, Any]) -> MViTBackbone:
    _check_options(name, options, MVIT_OPTIONS)
    opts = dict(options)
    if "spatial_size" in opts:
        opts["spatial_size"] = tuple(opts["spatial_size"])
    return MViTBackbone(builder(weights=None, **opts))


@register_backbone
def mvit_v1_b(**options: Any) -> MViTBackbone:
    """torchvision's MViT-v1-B (`MViT_V1_B_Weights.KINETICS400_V1`, 16 x 224 x 224), 768 features.
    Options: `temporal_size`, `spatial_size` (the input the positional embeddings are made for),
    `stochastic_depth_prob` (0.2), `attention_dropout`."""
    return _mvit_preset("mvit_v1_b", tv.mvit_v1_b, options)


@register_backbone
def mvit_v2_s(**options: Any) -> MViTBackbone:
    """torchvision's MViT-v2-S (`MViT_V2_S_Weights.KINETICS400_V1`, 16 x 224 x 224; relative
    positions, pooled residuals), 768 features. Options as `mvit_v1_b`."""
    return _mvit_preset("mvit_v2_s", tv.mvit_v2_s, options)


def _tiny_mvit(v2: bool, temporal_size: int, spatial_size: tuple[int, int]) -> MViT:
    """Two stages of one block (16 -> 32 channels), the second pooling queries 2x spatially;
    v2: relative positions, pooled residuals and the projection after attention, as mvit_v2_s."""
    blocks = [MSBlockConfig(1, 16, 16 if v2 else 32, [3, 3, 3] if v2 else [], [3, 3, 3],
                            [1, 1, 1] if v2 else [], [1, 2, 2]),
              MSBlockConfig(2, 16 if v2 else 32, 32, [3, 3, 3], [3, 3, 3], [1, 2, 2], [1, 1, 1])]
    return MViT(spatial_size=spatial_size, temporal_size=temporal_size, block_setting=blocks,
                residual_pool=v2, residual_with_cls_embed=False, rel_pos_embed=v2,
                proj_after_attn=v2, stochastic_depth_prob=0.1, num_classes=1)


@register_backbone
def mvit_v1_tiny(*, temporal_size: int = 8, spatial_size: tuple[int, int] = (32, 32)) -> MViTBackbone:
    """MViT-v1 with two one-block stages (32 features) for 8 x 32 x 32 clips."""
    return MViTBackbone(_tiny_mvit(False, temporal_size, tuple(spatial_size)))


@register_backbone
def mvit_v2_tiny(*, temporal_size: int = 8, spatial_size: tuple[int, int] = (32, 32)) -> MViTBackbone:
    """MViT-v2 with two one-block stages (32 features) for 8 x 32 x 32 clips."""
    return MViTBackbone(_tiny_mvit(True, temporal_size, tuple(spatial_size)))


class Swin3dBackbone(nn.Module):
    """A torchvision `SwinTransformer3d` without its classifier: `patch_embed`, `pos_drop`,
    `features` (stages at even indices, patch merging at odd ones), `norm`.

    `forward_features(x)`: `(B, 3, T, H, W)` -> `(B, C, T/2, H/32, W/32)` (patch 2 x 4 x 4, three
    merges) as the only map and the debias map.
    """

    def __init__(self, net: tv.SwinTransformer3d) -> None:
        super().__init__()
        self.patch_embed = net.patch_embed
        self.pos_drop = net.pos_drop
        self.features = net.features
        self.norm = net.norm
        self.num_features = self.debias_channels = net.num_features
        self.aux_channels = 0
        self.segmental = False
        self.head_init_std = HEAD_INIT_STD

    def forward_features(self, x: Tensor) -> BackboneOutput:
        x = self.norm(self.features(self.pos_drop(self.patch_embed(x))))  # (B, T, H, W, C)
        maps = x.permute(0, 4, 1, 2, 3)
        return BackboneOutput(maps=(maps,), debias_map=maps, aux_map=None)

    def forward(self, x: Tensor) -> BackboneOutput:
        return self.forward_features(x)


SWIN_OPTIONS = ("stochastic_depth_prob", "dropout", "attention_dropout", "window_size")


def _swin_preset(name: str, builder: Any, options: dict[str, Any]) -> Swin3dBackbone:
    _check_options(name, options, SWIN_OPTIONS)
    opts = dict(options)
    if "window_size" in opts:
        opts["window_size"] = list(opts["window_size"])
    return Swin3dBackbone(builder(weights=None, **opts))


@register_backbone
def swin3d_t(**options: Any) -> Swin3dBackbone:
    """torchvision's Video Swin-T (`Swin3D_T_Weights.KINETICS400_V1`; MMAction2's swin-tiny
    p244-w877), 768 features. Options: `stochastic_depth_prob` (0.1), `dropout`,
    `attention_dropout`, `window_size` ([8, 7, 7])."""
    return _swin_preset("swin3d_t", tv.swin3d_t, options)


@register_backbone
def swin3d_s(**options: Any) -> Swin3dBackbone:
    """torchvision's Video Swin-S (`Swin3D_S_Weights.KINETICS400_V1`), 768 features."""
    return _swin_preset("swin3d_s", tv.swin3d_s, options)


@register_backbone
def swin3d_b(**options: Any) -> Swin3dBackbone:
    """torchvision's Video Swin-B (`Swin3D_B_Weights.KINETICS400_V1` or
    `KINETICS400_IMAGENET22K_V1`), 1024 features."""
    return _swin_preset("swin3d_b", tv.swin3d_b, options)


@register_backbone
def swin3d_tiny(*, stochastic_depth_prob: float = 0.1) -> Swin3dBackbone:
    """Video Swin with embedding 16, one block a stage, 1-2-2-4 heads and 2 x 4 x 4 windows
    (128 features)."""
    return Swin3dBackbone(tv.SwinTransformer3d(
        patch_size=[2, 4, 4], embed_dim=16, depths=[1, 1, 1, 1], num_heads=[1, 2, 2, 4],
        window_size=[2, 4, 4], stochastic_depth_prob=stochastic_depth_prob, num_classes=1))
