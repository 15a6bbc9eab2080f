"""The value every backbone's `forward_features` returns (docs/architecture.md, "Backbone contract")."""

from __future__ import annotations

from typing import NamedTuple

from torch import Tensor

# `head_init_std`, the std of the classifier's normal init that MMAction2 0.x's head class for the
# backbone uses (and DEAR's configs keep): I3DHead, SlowFastHead, TPNHead 0.01; TSMHead 0.001.
HEAD_INIT_STD = 0.01
TSM_HEAD_INIT_STD = 0.001


class BackboneOutput(NamedTuple):
    """Feature maps of one forward pass.

    Attributes:
        maps: the final 5-D maps `(B, C_i, T_i, H_i, W_i)`, one per pathway, in the order in which
            the classifier concatenates their pooled features (SlowFast: FAST, slow, as MMAction2's
            SlowFastHead and DEAR's heads); global-average-pooled and concatenated they give
            `(B, num_features)`.
        debias_map: the 5-D map the CED head reads (docs/methods.md#dear): SlowFast's slow pathway,
        TSM's
            `(B*T, C, H, W)` reshaped to `(B, C, T, H, W)`, TPN's layer 3; else `maps[0]`.
        aux_map: the 5-D map of the auxiliary head (TPN: layer 3, `(B, 1024, T, H, W)` at full size),
            None when the backbone has none (`aux_channels == 0`).
    """

    maps: tuple[Tensor, ...]
    debias_map: Tensor
    aux_map: Tensor | None
