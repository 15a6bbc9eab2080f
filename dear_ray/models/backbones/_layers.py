"""Building blocks shared by the ResNet families, named like mmcv's `ConvModule`."""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn


def _pair_or_triple(v: int | Sequence[int], dims: int) -> tuple[int, ...]:
    return (v,) * dims if isinstance(v, int) else tuple(v)


class ConvModule(nn.Module):
    """Conv (no bias) -> optional BatchNorm -> optional ReLU.

    Children are `conv`, `bn` and `activate`, so state-dict keys read `<name>.conv.weight`,
    `<name>.bn.weight`, ... exactly as MMAction2 checkpoints (mmcv's ConvModule) spell them.

    Args:
        in_channels: input channels.
        out_channels: output channels.
        kernel_size: kernel, an int or a 2-/3-tuple.
        stride: stride, an int or a tuple.
        padding: padding, an int or a tuple.
        dims: 2 (Conv2d/BatchNorm2d) or 3 (Conv3d/BatchNorm3d).
        groups: convolution groups.
        norm: add a BatchNorm after the convolution.
        act: add a ReLU at the end.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | Sequence[int],
        stride: int | Sequence[int] = 1,
        padding: int | Sequence[int] = 0,
        *,
        dims: int = 3,
        groups: int = 1,
        norm: bool = True,
        act: bool = True,
    ) -> None:
        super().__init__()
        conv_cls = {2: nn.Conv2d, 3: nn.Conv3d}[dims]
        bn_cls = {2: nn.BatchNorm2d, 3: nn.BatchNorm3d}[dims]
        self.conv = conv_cls(
            in_channels,
            out_channels,
            _pair_or_triple(kernel_size, dims),
            stride=_pair_or_triple(stride, dims),
            padding=_pair_or_triple(padding, dims),
            groups=groups,
            bias=False,
        )
        self.bn = bn_cls(out_channels) if norm else None
        self.activate = nn.ReLU(inplace=True) if act else None

    def forward(self, x: Tensor) -> Tensor:
        x = self.conv(x)
        if self.bn is not None:
            x = self.bn(x)
        if self.activate is not None:
            x = self.activate(x)
        return x


def init_resnet_weights(module: nn.Module, *, zero_init_residual_bns: Sequence[nn.Module] = ()) -> None:
    """MMAction2's from-scratch init: kaiming-normal (fan_out, ReLU) convs, BN weight 1 / bias 0.

    Args:
        module: every Conv2d/Conv3d and BatchNorm below it is re-initialised.
        zero_init_residual_bns: BatchNorms whose weight is set to 0 afterwards (the last BN of each
            residual block, so every block starts as the identity).
    """
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.Conv3d)):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm2d, nn.BatchNorm3d)):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
    for bn in zero_init_residual_bns:
        nn.init.zeros_(bn.weight)
