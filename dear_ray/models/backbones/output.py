"""The value every backbone's `forward_features` returns (docs/architecture.md, "Backbone contract")."""

from __future__ import annotations

from typing import NamedTuple

from torch import Tensor


class BackboneOutput(NamedTuple):
    """Feature maps of one forward pass.

    Attributes:
        maps: the final 5-D maps `(B, C_i, T_i, H_i, W_i)`, one per pathway (SlowFast: slow, fast);
            global-average-pooled and concatenated they give `(B, num_features)`.
        debias_map: the 5-D map the CED head reads (SPEC 1.3): SlowFast's slow pathway, TSM's
            `(B*T, C, H, W)` reshaped to `(B, C, T, H, W)`, TPN's layer 3; else `maps[0]`.
        aux_map: the 5-D map of the auxiliary head (TPN: layer 3, `(B, 1024, T, H, W)` at full size),
            None when the backbone has none (`aux_channels == 0`).
    """

    maps: tuple[Tensor, ...]
    debias_map: Tensor
    aux_map: Tensor | None
