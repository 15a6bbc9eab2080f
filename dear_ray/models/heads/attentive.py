"""Attentive pooling: cross-attention of one learnable query over the backbone's map tokens, the
pooling of V-JEPA 2's frozen-backbone evaluation (Assran et al. 2025; facebookresearch/vjepa2
src/models/attentive_pooler.py `AttentivePooler`, evals/video_classification_frozen: 4 probe
blocks, 16 heads for ViT-L).

It replaces the recognizer's global average pool (`model.pooling: attentive`), so every head
(softmax, edl, dear, psl, ...) reads the pooled vector as it reads the average-pooled one; V-JEPA
2's attentive probe is this pooler followed by the `softmax` head's Linear (docs/backbones.md).

Structure, as vjepa2's `AttentivePooler(num_queries=1, complete_block=True)`:
- `depth - 1` pre-norm self-attention blocks over the tokens (LayerNorm, multi-head attention with
  an output projection, residual; LayerNorm, MLP C -> 4C -> C with GELU, residual);
- one cross-attention block: q = query, y = attention(q W_q, LN(x) W_k, LN(x) W_v) without an
  output projection, q <- q + y, q <- q + MLP(LN(q)); the query is not normalised;
- init: every Linear weight truncated-normal (std 0.02) with zero bias, LayerNorms 1 / 0, the query
  truncated-normal (std 0.02); then each self-attention block l (1-based) has its output
  projection and second MLP Linear divided by sqrt(2 l), and the cross block's second MLP Linear
  by sqrt(2 L) with L the last self-attention block's l (1 without any).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dear_ray.models.heads.base import check_positive

HEAD_DIM = 64  # the default number of heads is width / 64 (ViT-B: 12, ViT-L: 16)


def _mlp(width: int, ratio: float) -> nn.Sequential:
    hidden = int(width * ratio)
    return nn.Sequential(nn.Linear(width, hidden), nn.GELU(), nn.Linear(hidden, width))


class SelfAttentionBlock(nn.Module):
    """Pre-norm transformer block (vjepa2 `Block`): x + attn(LN(x)), then + MLP(LN(.))."""

    def __init__(self, width: int, num_heads: int, mlp_ratio: float) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(width)
        self.attn = nn.MultiheadAttention(width, num_heads, batch_first=True)
        self.norm2 = nn.LayerNorm(width)
        self.mlp = _mlp(width, mlp_ratio)

    def forward(self, x: Tensor) -> Tensor:
        h = self.norm1(x)
        x = x + self.attn(h, h, h, need_weights=False)[0]
        return x + self.mlp(self.norm2(x))


class CrossAttentionBlock(nn.Module):
    """q + attention(q, LN(x)) without output projection, then + MLP(LN(.)) (vjepa2
    `CrossAttentionBlock` with `CrossAttention`)."""

    def __init__(self, width: int, num_heads: int, mlp_ratio: float) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.norm1 = nn.LayerNorm(width)
        self.q = nn.Linear(width, width)
        self.kv = nn.Linear(width, 2 * width)
        self.norm2 = nn.LayerNorm(width)
        self.mlp = _mlp(width, mlp_ratio)

    def forward(self, q: Tensor, x: Tensor) -> Tensor:
        b, n, c = q.shape
        h = self.num_heads
        query = self.q(q).view(b, n, h, c // h).transpose(1, 2)
        k, v = self.kv(self.norm1(x)).view(b, x.shape[1], 2, h, c // h).permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(query, k, v).transpose(1, 2).reshape(b, n, c)
        q = q + y
        return q + self.mlp(self.norm2(q))


class AttentivePooler(nn.Module):
    """`(B, C, T, H, W)` map -> `(B, C)`: one learnable query attends over the T*H*W tokens.

    Built by `create_attentive_pooler`; `forward(maps)` takes the backbone's maps tuple (one map).
    """

    def __init__(self, width: int, *, depth: int, num_heads: int, mlp_ratio: float) -> None:
        super().__init__()
        self.query_tokens = nn.Parameter(torch.zeros(1, 1, width))
        self.blocks = nn.ModuleList(SelfAttentionBlock(width, num_heads, mlp_ratio)
                                    for _ in range(depth - 1))
        self.cross_attention_block = CrossAttentionBlock(width, num_heads, mlp_ratio)

    def forward(self, maps: tuple[Tensor, ...]) -> Tensor:
        if len(maps) != 1:
            raise ValueError(f"attentive pooling reads one map; this backbone returns {len(maps)} "
                             "(SlowFast's pathways): use model.pooling: avg")
        x = maps[0].flatten(2).transpose(1, 2)  # (B, T*H*W, C), tokens in (t, h, w) order
        for block in self.blocks:
            x = block(x)
        q = self.query_tokens.expand(x.shape[0], -1, -1)
        return self.cross_attention_block(q, x).squeeze(1)


def _init(pooler: AttentivePooler, std: float = 0.02) -> None:
    for m in pooler.modules():
        if isinstance(m, nn.Linear):
            nn.init.trunc_normal_(m.weight, std=std)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.MultiheadAttention):
            nn.init.trunc_normal_(m.in_proj_weight, std=std)
            nn.init.zeros_(m.in_proj_bias)
    nn.init.trunc_normal_(pooler.query_tokens, std=std)
    layer = 1
    with torch.no_grad():
        for layer, block in enumerate(pooler.blocks, start=1):
            block.attn.out_proj.weight.div_(math.sqrt(2.0 * layer))
            block.mlp[2].weight.div_(math.sqrt(2.0 * layer))
        pooler.cross_attention_block.mlp[2].weight.div_(math.sqrt(2.0 * layer))


def create_attentive_pooler(*, width: int, depth: int = 4, num_heads: int | None = None,
                            mlp_ratio: float = 4.0) -> AttentivePooler:
    """Builds the attentive pooler for a map of `width` channels.

    Args:
        width: C, the backbone's `num_features`.
        depth: blocks, the last one the cross-attention (V-JEPA 2's `num_probe_blocks`: 4).
        num_heads: attention heads (must divide C); default C / 64 when 64 divides C, else 1.
        mlp_ratio: the MLPs' hidden width / C.
    """
    check_positive("create_attentive_pooler", width=width, depth=depth)
    if num_heads is None:
        num_heads = width // HEAD_DIM if width % HEAD_DIM == 0 else 1
    check_positive("create_attentive_pooler", num_heads=num_heads)
    if width % num_heads:
        raise ValueError(f"create_attentive_pooler: num_heads {num_heads} must divide the map's "
                         f"{width} channels")
    if not mlp_ratio > 0:
        raise ValueError(f"create_attentive_pooler: mlp_ratio must be > 0, got {mlp_ratio}")
    pooler = AttentivePooler(width, depth=depth, num_heads=num_heads, mlp_ratio=mlp_ratio)
    _init(pooler)
    return pooler


__all__ = ["AttentivePooler", "CrossAttentionBlock", "SelfAttentionBlock", "create_attentive_pooler"]
