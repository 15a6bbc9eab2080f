"""The attentive pooler (V-JEPA 2's attentive probe) against a hand computation, and its wiring."""

import math

import pytest
import torch
import torch.nn.functional as F

from dear_ray.config import ConfigError, load_config
from dear_ray.models import build_recognizer
from dear_ray.models.heads.attentive import create_attentive_pooler

pytestmark = pytest.mark.usefixtures("seed_and_one_thread")


def _mlp(mlp, x):
    return mlp[2](F.gelu(mlp[0](x)))


def test_one_block_is_cross_attention_of_the_query_without_output_projection():
    pooler = create_attentive_pooler(width=4, depth=1, num_heads=2)
    maps = torch.randn(3, 4, 2, 1, 3)  # B=3, C=4, six tokens
    got = pooler((maps,))
    blk = pooler.cross_attention_block
    x = maps.flatten(2).transpose(1, 2)  # (3, 6, 4)
    q0 = pooler.query_tokens[0, 0]  # (4,)
    q = blk.q(q0)  # the query is not normalised
    k, v = blk.kv(F.layer_norm(x, (4,), blk.norm1.weight, blk.norm1.bias)).split(4, dim=-1)
    heads = []
    for h in range(2):  # two heads of 2 channels
        sl = slice(2 * h, 2 * h + 2)
        scores = (k[..., sl] @ q[sl]) / math.sqrt(2)  # (3, 6)
        heads.append((scores.softmax(dim=1).unsqueeze(-1) * v[..., sl]).sum(dim=1))
    q1 = q0 + torch.cat(heads, dim=1)
    want = q1 + _mlp(blk.mlp, F.layer_norm(q1, (4,), blk.norm2.weight, blk.norm2.bias))
    assert got.shape == (3, 4)
    assert torch.allclose(got, want, atol=1e-5)


def test_self_attention_blocks_come_first_and_init_is_rescaled():
    pooler = create_attentive_pooler(width=128, depth=4)
    assert pooler.cross_attention_block.num_heads == 2  # 128 / 64
    assert len(pooler.blocks) == 3
    stds = [b.mlp[2].weight.std().item() for b in pooler.blocks]
    for layer, std in enumerate(stds, start=1):  # trunc-normal 0.02 / sqrt(2 l)
        assert std == pytest.approx(0.02 / math.sqrt(2 * layer), rel=0.1)
    assert pooler.blocks[2].attn.out_proj.weight.std().item() == pytest.approx(0.02 / math.sqrt(6),
                                                                                rel=0.1)
    # the cross block's second MLP layer takes the last self-attention block's factor
    cross = pooler.cross_attention_block.mlp[2].weight.std().item()
    assert cross == pytest.approx(0.02 / math.sqrt(6), rel=0.1)
    one = create_attentive_pooler(width=128, depth=1)
    assert one.cross_attention_block.mlp[2].weight.std().item() == pytest.approx(
        0.02 / math.sqrt(2), rel=0.1)
    x = torch.randn(2, 128, 2, 2, 2)
    tokens = x.flatten(2).transpose(1, 2)
    for block in pooler.blocks:
        tokens = block(tokens)
    q = pooler.query_tokens.expand(2, -1, -1)
    assert torch.allclose(pooler((x,)), pooler.cross_attention_block(q, tokens).squeeze(1))


@pytest.mark.parametrize("head", ["softmax", "edl", "dear", "psl"])
def test_attentive_pooling_feeds_every_head(head):
    model = build_recognizer(backbone="swin3d_tiny", head=head, num_classes=3, pooling="attentive",
                             pooling_options={"depth": 2}, freeze_backbone=True)
    clips = torch.randn(2, 3, 8, 32, 32)
    out = model(clips)
    assert out.features.shape == (2, 128)
    loss, _ = model.training_loss(clips, torch.tensor([0, 2]), anneal=0.3, iteration=1)
    loss.backward()
    assert model.probe.query_tokens.grad is not None and model.probe.query_tokens.grad.abs().sum() > 0
    assert all(p.grad is None for p in model.backbone.parameters())
    model.eval()
    with torch.no_grad():  # the features are the probe's output on the backbone's maps
        maps = model.backbone.forward_features(clips).maps
        assert torch.allclose(model(clips).features, model.probe(maps), atol=1e-6)


def test_attentive_pooling_reads_one_map_and_options_are_checked():
    model = build_recognizer(backbone="slowfast_tiny", head="softmax", num_classes=3,
                             pooling="attentive")
    with pytest.raises(ValueError, match="reads one map; this backbone returns 2"):
        model(torch.randn(1, 3, 16, 32, 32))
    with pytest.raises(ValueError, match="num_heads 3 must divide the map's 64 channels"):
        build_recognizer(backbone="r3d_18_tiny", head="softmax", num_classes=3, pooling="attentive",
                         pooling_options={"num_heads": 3})
    with pytest.raises(ConfigError, match=r"model.pooling_options.*need model.pooling: attentive"):
        load_config({"model": {"pooling_options": {"depth": 1}}})
    with pytest.raises(ConfigError, match=r"unknown option\(s\) \['width'\]"):
        load_config({"model": {"pooling": "attentive", "pooling_options": {"width": 8}}})
