"""SDN's 3D-ResNet-18 (Hara et al.'s 3D-ResNets, shortcut type A), the backbone of SDN (Choi et al. 2019).

conv1 7x7x7 stride (1, 2, 2), max-pool 3x3x3 stride 2, four stages of two BasicBlocks (3x3x3 convs),
stages 2-4 stride 2 in time and space; a 512-d feature. Shortcut type A has no parameters: the input
is subsampled with the block's stride and the extra channels are zeros. Keys follow SDN's / Hara's
checkpoints (`conv1.weight`, `bn1.weight`, `layer1.0.conv1.weight`, `layer1.0.bn2.weight`), since no
MMAction2 checkpoint of this network exists.

`detach_shortcut`: the released code (vt-vl-lab/SDN models/resnet.py `downsample_basic_block`)
concatenates the zero channels to `out.data`, so no gradient flows back through the down-sampling
shortcuts (the first block of stages 2-4); the identity shortcuts of the other blocks pass it. The
forward pass is the same either way. `r3d18_a` (SDN's network) detaches by default, as released;
`detach_shortcut=False` lets the gradient through those shortcuts too (the textbook residual).
`r3d18_tiny` (the demo's network, not SDN's) keeps the gradient unless asked (docs/fidelity.md).
"""

from __future__ import annotations

from typing import Any

import torch.nn.functional as F
from torch import Tensor, nn

from ._layers import init_resnet_weights
from ._registry import register_backbone
from .output import HEAD_INIT_STD, BackboneOutput
from .resnet3d import build_preset


def shortcut_a(x: Tensor, out_channels: int, stride: int, *, detach: bool = False) -> Tensor:
    """Parameter-free shortcut: `x[:, :, ::s, ::s, ::s]` followed by zero channels up to `out_channels`.

    Args:
        x: `(B, C, T, H, W)`.
        out_channels: channels of the result, >= C.
        stride: subsampling in T, H and W.
        detach: cut the gradient to `x` (SDN's `out.data`): the result is a constant for autograd.

    Returns:
        `(B, out_channels, ceil(T/s), ceil(H/s), ceil(W/s))`.
    """
    out = x[:, :, ::stride, ::stride, ::stride]
    if detach:
        out = out.detach()
    return F.pad(out, (0, 0, 0, 0, 0, 0, 0, out_channels - x.shape[1]))


class BasicBlock3d(nn.Module):
    """Two 3x3x3 conv + BN layers with a type-A shortcut when the shape changes (`detach_shortcut`:
    no gradient through that shortcut, see the module docstring)."""

    def __init__(self, inplanes: int, planes: int, stride: int = 1, *,
                 detach_shortcut: bool = False) -> None:
        super().__init__()
        self.conv1 = nn.Conv3d(inplanes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm3d(planes)
        self.conv2 = nn.Conv3d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm3d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.planes = planes
        self.stride = stride
        self.project = stride != 1 or inplanes != planes
        self.detach_shortcut = detach_shortcut

    def forward(self, x: Tensor) -> Tensor:
        identity = (shortcut_a(x, self.planes, self.stride, detach=self.detach_shortcut)
                    if self.project else x)
        out = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(out)) + identity)


class ResNet3dA(nn.Module):
    """3D-ResNet with BasicBlocks and type-A shortcuts; built by `r3d_a(...)`.

    `forward_features(x)`: `(B, 3, T, H, W)` -> stage 4 `(B, 8 * base_channels, ~T/16, H/32, W/32)` as the
    only map and the debias map.
    """

    def __init__(self, *, stage_blocks: tuple[int, ...], base_channels: int, in_channels: int,
                 detach_shortcut: bool) -> None:
        super().__init__()
        self.conv1 = nn.Conv3d(in_channels, base_channels, 7, (1, 2, 2), 3, bias=False)
        self.bn1 = nn.BatchNorm3d(base_channels)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool3d(3, 2, 1)
        inplanes = base_channels
        self.res_layers = []
        for i, num_blocks in enumerate(stage_blocks):
            planes = base_channels * 2**i
            blocks = [BasicBlock3d(inplanes if j == 0 else planes, planes,
                                   2 if (i > 0 and j == 0) else 1, detach_shortcut=detach_shortcut)
                      for j in range(num_blocks)]
            self.add_module(f"layer{i + 1}", nn.Sequential(*blocks))
            self.res_layers.append(f"layer{i + 1}")
            inplanes = planes
        self.num_features = inplanes
        self.debias_channels = inplanes
        self.aux_channels = 0
        self.segmental = False
        self.head_init_std = HEAD_INIT_STD

    def forward_features(self, x: Tensor) -> BackboneOutput:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        for name in self.res_layers:
            x = getattr(self, name)(x)
        return BackboneOutput(maps=(x,), debias_map=x, aux_map=None)

    def forward(self, x: Tensor) -> BackboneOutput:
        return self.forward_features(x)


def r3d_a(*, stage_blocks: tuple[int, ...] = (2, 2, 2, 2), base_channels: int = 64,
          in_channels: int = 3, detach_shortcut: bool = False) -> ResNet3dA:
    """Builds a type-A 3D-ResNet (Hara et al.; SDN's `resnet18(shortcut_type='A')` by default).

    Args:
        stage_blocks: BasicBlocks per stage ((2, 2, 2, 2): ResNet-18).
        base_channels: stem width; the feature has `8 * base_channels` channels.
        in_channels: input channels.
        detach_shortcut: no gradient through the down-sampling shortcuts (SDN's released code).
    """
    if not isinstance(detach_shortcut, bool):
        raise ValueError(f"r3d_a: detach_shortcut must be true or false, got {detach_shortcut!r}")
    model = ResNet3dA(stage_blocks=stage_blocks, base_channels=base_channels, in_channels=in_channels,
                      detach_shortcut=detach_shortcut)
    init_resnet_weights(model)  # Hara's init: kaiming-normal fan_out convs, BN 1 / 0
    return model


# The presets: SDN's network as released; the demo's tiny one keeps the shortcuts' gradient.
PRESETS = {"r3d18_a": dict(detach_shortcut=True),
           "r3d18_tiny": dict(stage_blocks=(1, 1, 1, 1), base_channels=8)}


def shortcut_setting(backbone: str, options: dict[str, Any]) -> str | None:
    """How a type-A preset with `options` treats its down-sampling shortcuts: `A/detached` (SDN's
    released gradient) or `A` (gradient through them); None for a backbone that is no preset here."""
    if backbone not in PRESETS:
        return None
    return "A/detached" if {**PRESETS[backbone], **options}.get("detach_shortcut", False) else "A"


@register_backbone
def r3d18_a(**options: Any) -> ResNet3dA:
    """SDN's 3D-ResNet-18, shortcut A (detached, as released), 512 features (16x112x112 clips)."""
    return build_preset(r3d_a, "r3d18_a", PRESETS["r3d18_a"], options)


@register_backbone
def r3d18_tiny(**options: Any) -> ResNet3dA:
    """The same network with one block per stage and 8 stem channels (64 features); the gradient
    flows through its shortcuts unless `detach_shortcut=True`."""
    return build_preset(r3d_a, "r3d18_tiny", PRESETS["r3d18_tiny"], options)
