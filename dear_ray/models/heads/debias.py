"""The contrastive evidential debias (CED) branch of DEAR (docs/methods.md#dear) and the `dear` /
`dear_alt` heads.

Training only. Reads the backbone's `debias_map` (B, C, T, H, W) and runs three branches, each
conv -> BN -> ReLU -> global average pool -> dropout -> Linear(width, K) -> alpha = exp(clamp) + 1:
- f1 "unbiased": Conv3d (k, 3, 3), stride (1, 2, 2), padding (0, 1, 1);
- f2 "bias_input": a separate Conv3d of the same shape on the map with its frames shuffled in time;
- f3 "bias_network": Conv2d 3x3, stride 2, padding 1, per frame.
`temporal_kernel` k: 3 (the 2023 fix, default) or 1 (the original release with which the shuffle
is a no-op, Cogito2012/DEAR GitHub issue #9; the paper's numbers come from it). Child names follow
DEAR's DebiasHead
(`f1_conv3d.conv`, `f1_conv3d.bn`, `f1_fc`, ...), so its checkpoints load.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from dear_ray.losses.ced import CED_WEIGHT
from dear_ray.losses.edl import dirichlet_alpha
from dear_ray.models.backbones._layers import ConvModule
from dear_ray.models.heads.base import check_positive, register_head
from dear_ray.models.heads.edl import EDLHead, create_edl_head

CED_F3_INITS = ("kaiming", "xavier")


class CEDOutput(NamedTuple):
    """alphas: the three branches' Dirichlet parameters, each (B, K); features: their pooled
    features before dropout, each (B, width)."""

    alphas: tuple[torch.Tensor, torch.Tensor, torch.Tensor]
    features: tuple[torch.Tensor, torch.Tensor, torch.Tensor]


class DebiasHead(nn.Module):
    """The three CED branches (see the module docstring).

    Args:
        f1_conv3d, f2_conv3d: ConvModule (Conv3d, BN3d, ReLU), C -> width.
        f3_conv2d: ConvModule (Conv2d, BN2d, ReLU), C -> width.
        f1_fc, f2_fc, f3_fc: Linear(width, K).
        dropout: dropout probability before the three fcs.
        temporal_kernel: the Conv3d's temporal kernel size (1 or 3).
    """

    def __init__(self, f1_conv3d: nn.Module, f2_conv3d: nn.Module, f3_conv2d: nn.Module,
                 f1_fc: nn.Linear, f2_fc: nn.Linear, f3_fc: nn.Linear, *, dropout: float,
                 temporal_kernel: int) -> None:
        super().__init__()
        self.f1_conv3d, self.f2_conv3d, self.f3_conv2d = f1_conv3d, f2_conv3d, f3_conv2d
        self.f1_fc, self.f2_fc, self.f3_fc = f1_fc, f2_fc, f3_fc
        self.dropout = nn.Dropout(dropout)
        self.temporal_kernel = temporal_kernel

    def forward(self, x: torch.Tensor, *, time_permutation: torch.Tensor | None = None) -> CEDOutput:
        """Run the three branches.

        Args:
            x: (B, C, T, H, W) debias map.
            time_permutation: (T,) frame order for f2; default a fresh `torch.randperm(T)`.
        """
        if x.dim() != 5:
            raise ValueError(f"DebiasHead: expected a (B, C, T, H, W) debias map, got {tuple(x.shape)}")
        b, c, t, h, w = x.shape
        if t < self.temporal_kernel:
            raise ValueError(f"DebiasHead: temporal_kernel={self.temporal_kernel} (temporal padding 0) "
                             f"needs a debias map with T >= {self.temporal_kernel}, got {tuple(x.shape)}; "
                             f"sample more frames or set head_options temporal_kernel: 1")
        if time_permutation is None:
            time_permutation = torch.randperm(t, device=x.device)
        z1 = self.f1_conv3d(x).mean(dim=(2, 3, 4))
        z2 = self.f2_conv3d(x[:, :, time_permutation]).mean(dim=(2, 3, 4))
        frames = x.transpose(1, 2).reshape(b * t, c, h, w)
        z3 = self.f3_conv2d(frames)
        z3 = z3.reshape(b, t, *z3.shape[1:]).mean(dim=(1, 3, 4))
        alphas = tuple(dirichlet_alpha(fc(self.dropout(z)).float())
                       for fc, z in ((self.f1_fc, z1), (self.f2_fc, z2), (self.f3_fc, z3)))
        return CEDOutput(alphas=alphas, features=(z1, z2, z3))

    def classifier_parameter_names(self) -> set[str]:
        return {f"{fc}.{p}" for fc in ("f1_fc", "f2_fc", "f3_fc") for p in ("weight", "bias")}


def create_debias_head(
    *,
    in_channels: int,
    num_classes: int,
    width: int | None = None,
    temporal_kernel: int = 3,
    dropout: float = 0.5,
    init_std: float = 0.01,
    f3_init: str = "kaiming",
) -> DebiasHead:
    """Build the CED branches, initialised as DEAR's DebiasHead (heads/debias_head.py at b752998).

    DEAR's `init_weights` re-initialises only `nn.Linear` (normal, std `init_std`), `nn.Conv3d`
    (xavier-uniform, gain 1) and `nn.BatchNorm3d` (weight 1, bias 0). Its f3 `nn.Conv2d` is not
    matched, so it keeps the init mmcv 1.x's ConvModule gives it at construction:
    `kaiming_init(conv, mode='fan_out', nonlinearity='relu', distribution='normal')`, i.e.
    N(0, 2 / (width * 3 * 3)), and its BatchNorm2d weight 1, bias 0.

    Args:
        in_channels: C of the debias map.
        num_classes: K.
        width: the branches' conv output channels; default 2C. With C = 2048 and k = 3 each Conv3d
            has ~226M parameters, so a smaller width makes the head affordable.
        temporal_kernel: 1 (original release) or 3 (default, 2023 fix).
        dropout: before the three fcs.
        init_std: std of the fcs' normal init (DEAR's configs: 0.01 on every backbone, TSM too).
        f3_init: `kaiming` (the released init of f3's Conv2d, see above) or `xavier` (xavier-uniform
            like the Conv3d branches; dear_ray's earlier init).
    """
    width = 2 * in_channels if width is None else width
    if f3_init not in CED_F3_INITS:
        raise ValueError(f"create_debias_head: f3_init must be one of {CED_F3_INITS}, got {f3_init!r}")
    check_positive("create_debias_head", in_channels=in_channels, num_classes=num_classes, width=width)
    if temporal_kernel not in (1, 3):
        raise ValueError(f"create_debias_head: temporal_kernel must be 1 or 3, got {temporal_kernel!r}")
    k = temporal_kernel

    def conv3d() -> ConvModule:
        return ConvModule(in_channels, width, (k, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1), dims=3)

    head = DebiasHead(conv3d(), conv3d(), ConvModule(in_channels, width, 3, stride=2, padding=1, dims=2),
                      *(nn.Linear(width, num_classes) for _ in range(3)), dropout=dropout,
                      temporal_kernel=k)
    for m in head.modules():
        if isinstance(m, nn.Conv3d) or (isinstance(m, nn.Conv2d) and f3_init == "xavier"):
            nn.init.xavier_uniform_(m.weight)
        elif isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, (nn.BatchNorm2d, nn.BatchNorm3d)):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, std=init_std)
            nn.init.zeros_(m.bias)
    return head


def _dear(mode: str, *, in_features: int, num_classes: int, debias_channels: int, evidence: str,
          loss_type: str, disentangle: bool, temporal_kernel: int, width: int | None,
          ced_weight: float, init_std: float, ced_init_std: float, ced_f3_init: str,
          mse_avu: bool, hsic_normalised: bool = True) -> EDLHead:
    if debias_channels < 1:
        raise ValueError(f"the dear heads need a backbone with a debias map (debias_channels > 0), "
                         f"got debias_channels={debias_channels}")
    debias_head = create_debias_head(in_channels=debias_channels, num_classes=num_classes, width=width,
                                     temporal_kernel=temporal_kernel, init_std=ced_init_std,
                                     f3_init=ced_f3_init)
    return create_edl_head(in_features=in_features, num_classes=num_classes, evidence=evidence,
                           loss_type=loss_type, avu=True, disentangle=disentangle,
                           init_std=init_std, debias_head=debias_head, ced_mode=mode,
                           ced_weight=ced_weight, mse_avu=mse_avu,
                           ced_hsic_normalised=hsic_normalised)


@register_head("dear")
def dear(*, in_features: int, num_classes: int, debias_channels: int, evidence: str = "exp",
         loss_type: str = "log", disentangle: bool = False, temporal_kernel: int = 3,
         width: int | None = None, ced_weight: float = CED_WEIGHT, init_std: float = 0.01,
         ced_init_std: float = 0.01, ced_f3_init: str = "kaiming", mse_avu: bool = False) -> EDLHead:
    """DEAR as released: `edl_avu` + CED in joint mode (docs/methods.md#dear).

    Options beyond `edl_avu`'s: `temporal_kernel` (1 = the head of the paper's numbers, 3 = the
    2023 fix), `width` (the CED convs' output channels, default 2C), `ced_weight` (0.1),
    `init_std` (fc_cls; the recognizer passes the backbone's, 0.001 on TSM), `ced_init_std` (the
    CED fcs: 0.01, DEAR's DebiasHead config on every backbone, TSM too), `ced_f3_init` (`kaiming`,
    released, or `xavier`; see `create_debias_head`), `mse_avu` (see `EDLHead`).
    """
    return _dear("joint", in_features=in_features, num_classes=num_classes,
                 debias_channels=debias_channels, evidence=evidence, loss_type=loss_type,
                 disentangle=disentangle, temporal_kernel=temporal_kernel, width=width,
                 ced_weight=ced_weight, init_std=init_std, ced_init_std=ced_init_std,
                 ced_f3_init=ced_f3_init, mse_avu=mse_avu)


@register_head("dear_alt")
def dear_alt(*, in_features: int, num_classes: int, debias_channels: int, evidence: str = "exp",
             loss_type: str = "log", disentangle: bool = False, temporal_kernel: int = 3,
             width: int | None = None, ced_weight: float = CED_WEIGHT, init_std: float = 0.01,
             ced_init_std: float = 0.01, ced_f3_init: str = "kaiming",
             mse_avu: bool = False, hsic_normalised: bool = True) -> EDLHead:
    """`edl_avu` + CED with the alternating HSIC min-max (parity of `iteration`,
    docs/methods.md#dear_alt); the options are `dear`'s plus `hsic_normalised`: divide the unbiased
    HSIC by N(N-3) (True, as Song et al. 2012 define it) or not (False: DEAR's released alternating
    mode, `DebiasHead.hsic_loss` at b752998)."""
    return _dear("alternating", in_features=in_features, num_classes=num_classes,
                 debias_channels=debias_channels, evidence=evidence, loss_type=loss_type,
                 disentangle=disentangle, temporal_kernel=temporal_kernel, width=width,
                 ced_weight=ced_weight, init_std=init_std, ced_init_std=ced_init_std,
                 ced_f3_init=ced_f3_init, mse_avu=mse_avu,
                 hsic_normalised=hsic_normalised)
