"""The psl head alone and on every tiny backbone: forward, training loss with the shuffled clip,
backward, predict."""

import math

import pytest
import torch
import torch.nn.functional as F

from dear_ray.losses import psl_loss
from dear_ray.models import build_recognizer
from dear_ray.models.heads import HeadInputs, create_head
from dear_ray.models.recognizer import shuffle_frames

TINY = ["i3d_tiny", "tsm_tiny", "slowfast_tiny", "tpn_tiny", "r3d18_tiny"]
B, F_DIM, K = 6, 8, 4
LABELS = torch.tensor([0, 1, 2, 3, 0, 1])

pytestmark = pytest.mark.usefixtures("seed_and_one_thread")


def _head(**kw):
    return create_head("psl", in_features=F_DIM, num_classes=K, embed_dim=5, hidden_dim=7, **kw)


def test_psl_head_layers_init_and_logits():
    torch.manual_seed(0)
    head = create_head("psl", in_features=F_DIM, num_classes=K)
    assert [type(m).__name__ for m in head.mlp] == ["Linear", "BatchNorm1d", "ReLU", "Linear"]
    assert head.mlp[0].out_features == 1024 and head.mlp[3].out_features == 128
    assert head.prototypes.shape == (K, 128)
    assert float(head.prototypes.detach().mean()) == pytest.approx(0.005, abs=0.001)  # N(0.005, 0.005^2)
    assert float(head.prototypes.detach().std()) == pytest.approx(0.005, rel=0.1)
    assert head.uses_shuffled_clip and not head.mc_dropout
    assert head.classifier_parameter_names() == {"prototypes"}
    head.eval()
    f = torch.randn(B, F_DIM)
    z = head.embed(f)
    assert torch.allclose(z.norm(dim=1), torch.ones(B))
    expected = z @ F.normalize(head.prototypes, dim=1).t() / 0.2
    assert torch.allclose(head(f), expected, atol=1e-6)


def test_psl_head_loss_embeds_clips_and_shuffled_clips_in_one_batchnorm_batch():
    head = _head()  # train mode: BatchNorm normalises with the batch's statistics
    f, fs = torch.randn(B, F_DIM), torch.randn(B, F_DIM) + 3.0
    loss, stats = head.loss(HeadInputs(features=f, labels=LABELS, anneal=0.0, iteration=0,
                                       shuffled_features=fs))
    both = F.normalize(head.mlp(torch.cat([f, fs])), dim=1)
    expected, _ = psl_loss(both[:B], head.prototypes, LABELS, shuffled=both[B:])
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)
    apart, _ = psl_loss(F.normalize(head.mlp(f), dim=1), head.prototypes, LABELS,
                        shuffled=F.normalize(head.mlp(fs), dim=1))
    assert abs(apart.item() - loss.item()) > 1e-4  # the BatchNorm batch matters
    assert set(stats) == {"loss_psl", "acc", "sim_prototype", "sim_shuffled"}


def test_psl_head_without_shuffle_and_errors():
    head = _head(shuffle=False)
    assert not head.uses_shuffled_clip
    f = torch.randn(B, F_DIM)
    loss, stats = head.loss(HeadInputs(features=f, labels=LABELS, anneal=0.0, iteration=0))
    expected, _ = psl_loss(F.normalize(head.mlp(f), dim=1), head.prototypes, LABELS)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6) and "sim_shuffled" not in stats
    with pytest.raises(ValueError, match="shuffle=True needs HeadInputs.shuffled_features"):
        _head().loss(HeadInputs(features=f, labels=LABELS, anneal=0.0, iteration=0))
    with pytest.raises(ValueError, match=r"theta is a target cosine .* in \[-1, 1\], got 1.5"):
        _head(theta=1.5)
    with pytest.raises(ValueError, match="temperature must be > 0"):
        _head(temperature=0)
    with pytest.raises(ValueError, match="embed_dim must be a positive integer"):
        create_head("psl", in_features=F_DIM, num_classes=K, embed_dim=0)


def test_psl_head_mid_bn_frozen_keeps_the_init_statistics_in_train_mode():
    head = _head(mid_bn="frozen").train()
    bn = head.mlp[1]
    assert not bn.training and head.training
    f = torch.randn(B, F_DIM)
    head.loss(HeadInputs(features=f, labels=LABELS, anneal=0.0, iteration=0,
                         shuffled_features=torch.randn(B, F_DIM)))
    assert torch.equal(bn.running_mean, torch.zeros(7)) and torch.equal(bn.running_var, torch.ones(7))
    h = head.mlp[0](f)
    assert torch.allclose(bn(h), h / math.sqrt(1 + 1e-5) * bn.weight + bn.bias, atol=1e-6)
    batch = _head().train()
    assert batch.mlp[1].training
    assert [type(m).__name__ for m in _head(mid_bn="none").mlp] == ["Linear", "ReLU", "Linear"]
    with pytest.raises(ValueError, match=r"mid_bn must be one of \('batch', 'frozen', 'none'\), got 'sync'"):
        _head(mid_bn="sync")


def test_shuffle_frames_applies_one_permutation_to_the_whole_batch():
    t = 6
    clips = torch.arange(t, dtype=torch.float32).view(1, 1, t, 1, 1).expand(3, 2, t, 2, 2).clone()
    torch.manual_seed(1)
    out = shuffle_frames(clips)
    torch.manual_seed(1)
    perm = torch.randperm(t)
    assert torch.equal(out, clips[:, :, perm])
    assert torch.equal(out[0, 0, :, 0, 0], perm.float())  # every video, channel, pixel alike
    assert torch.equal(out[2, 1, :, 1, 1], perm.float())


def test_training_loss_gives_the_head_the_shuffled_clips_features():
    model = build_recognizer(backbone="r3d18_tiny", head="psl", num_classes=K, dropout=0.0).eval()
    clips = torch.randn(B, 3, 8, 32, 32)
    seen = {}
    original = model.cls_head.loss

    def spy(inputs):
        seen["inputs"] = inputs
        return original(inputs)

    model.cls_head.loss = spy
    torch.manual_seed(7)
    model.training_loss(clips, LABELS, anneal=0.0, iteration=0)
    torch.manual_seed(7)
    perm = torch.randperm(8)
    with torch.no_grad():  # eval mode: BatchNorm running statistics, so one pass = two passes
        plain = model(clips).features
        shuffled = model(clips[:, :, perm]).features
    inputs = seen["inputs"]
    assert torch.allclose(inputs.features, plain, atol=1e-5)
    assert torch.allclose(inputs.shuffled_features, shuffled, atol=1e-5)
    assert not torch.allclose(plain, shuffled, atol=1e-3)  # the order of the frames matters


@pytest.mark.parametrize("backbone", TINY)
def test_psl_on_every_tiny_backbone_trains_and_predicts(backbone):
    model = build_recognizer(backbone=backbone, head="psl", num_classes=K, dropout=0.0,
                             head_options={"embed_dim": 16, "hidden_dim": 32})
    clips = torch.randn(B, 3, 8, 32, 32)
    out = model(clips)
    assert out.logits.shape == (B, K) and out.features.shape == (B, model.backbone.num_features)
    loss, stats = model.training_loss(clips, LABELS, anneal=0.0, iteration=0)
    assert loss.dim() == 0 and torch.isfinite(loss)
    assert stats["loss"] == pytest.approx(loss.item())
    assert all(isinstance(v, float) and math.isfinite(v) for v in stats.values())
    assert -1.0 <= stats["sim_shuffled"] <= 1.0
    loss.backward()
    missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not missing
    assert float(model.cls_head.prototypes.grad.abs().sum()) > 0
    pred = model.predict(clips[:2].unsqueeze(1), stochastic_passes=1)
    assert pred.logits.shape == (2, K) and pred.sample_logits is None
    # the store's features are the head's unit-norm embedding (PSL scores those), one view here
    assert pred.features.shape == (2, 16)
    assert torch.allclose(pred.features.norm(dim=1), torch.ones(2), atol=1e-5)
    assert model.training
    # with views averaged as `score` the stored embedding is a linear classifier's input:
    # logits = features @ (normalised prototypes / tau).T, on every view count
    two = model.predict(torch.stack([clips[:2], clips[2:4]], dim=1), average_clips="score")
    weight = F.normalize(model.cls_head.prototypes.detach(), dim=1) / 0.2
    assert torch.allclose(two.logits, two.features @ weight.t(), atol=1e-4)
