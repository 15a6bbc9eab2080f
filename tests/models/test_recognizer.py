"""The Recognizer over every registered tiny backbone x every head, and its API contract."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import dear_ray.models.recognizer as recognizer_module
from dear_ray.models import build_recognizer, create_backbone, list_backbones, list_heads
from dear_ray.models.backbones import BackboneOutput
from dear_ray.registry import UnknownNameError
from tests.models._backbones import TINY, TINY_NAMES
K, P = 4, 5
LABELS = torch.tensor([0, 1, 2, 3])


pytestmark = pytest.mark.usefixtures("seed_and_one_thread")


def _clips(b=4, t=8, size=32):
    return torch.randn(b, 3, t, size, size)


def _build(backbone, head, **kw):
    opts = {"num_places": P} if head == "sdn" else {}
    opts.update(kw.pop("head_options", {}))
    return build_recognizer(backbone=backbone, head=head, num_classes=K, head_options=opts, **kw)


def _sdn_inputs(clips):
    return {"scene": torch.softmax(torch.randn(clips.shape[0], P), 1), "masked_clips": clips * 0.5}


def test_tiny_presets_are_all_registered():
    assert set(TINY_NAMES) == {"i3d_tiny", "tsm_tiny", "slowfast_tiny", "tpn_tiny", "r3d18_tiny",
                               "r3d_18_tiny", "mc3_18_tiny", "r2plus1d_18_tiny", "s3d_tiny",
                               "mvit_v1_tiny", "mvit_v2_tiny", "swin3d_tiny", "videomae_tiny",
                               "vjepa2_tiny"}


@pytest.mark.parametrize("head", list_heads())
@pytest.mark.parametrize("backbone", TINY)
def test_every_backbone_head_pair_trains_and_predicts(backbone, head):
    clips = _clips()
    model = _build(backbone, head)
    if model.cls_head.uses_debias_map:
        t = model.backbone.forward_features(clips).debias_map.shape[2]
        if t < 3:  # the 3x3x3 CED kernel has no temporal padding: fall back to the original (1,3,3)
            model = _build(backbone, head, head_options={"temporal_kernel": 1})
    out = model(clips)
    assert out.logits.shape == (4, K) and out.features.shape == (4, model.backbone.num_features)
    extra = _sdn_inputs(clips) if head == "sdn" else {}
    loss, stats = model.training_loss(clips, LABELS, anneal=0.2, iteration=3, **extra)
    assert loss.dim() == 0 and torch.isfinite(loss)
    assert stats["loss"] == pytest.approx(loss.item())
    assert all(isinstance(v, float) and math.isfinite(v) for v in stats.values())
    assert 0.0 <= stats["acc"] <= 1.0
    loss.backward()
    # every trainable parameter takes part (DDP without find_unused_parameters needs that)
    missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not missing
    pred = model.predict(clips[:2].unsqueeze(1).repeat(1, 2, 1, 1, 1, 1), stochastic_passes=2)
    assert pred.logits.shape == (2, K) and pred.sample_logits.shape == (2, 2, K)
    assert model.training  # predict restores the mode


@pytest.mark.parametrize(("backbone", "frames", "debias_t"), [
    ("tsm_tiny", 8, 8),        # (B*T, C, H, W) folded back to (B, C, T, H, W)
    ("slowfast_tiny", 16, 4),  # the slow pathway (tau 4)
    ("tpn_tiny", 8, 8),        # TPN layer 3
])
def test_ced_head_reads_the_debias_map_with_kernel_3(backbone, frames, debias_t):
    model = _build(backbone, "dear")
    assert model.cls_head.debias_head.temporal_kernel == 3
    clips = _clips(t=frames)
    seen = {}
    hook = model.cls_head.debias_head.register_forward_pre_hook(
        lambda _m, args: seen.update(shape=tuple(args[0].shape)))
    loss, stats = model.training_loss(clips, LABELS, anneal=0.2, iteration=0)
    hook.remove()
    expected = model.backbone.forward_features(clips).debias_map.shape
    assert seen["shape"] == tuple(expected)
    assert seen["shape"][1] == model.backbone.debias_channels and seen["shape"][2] == debias_t
    conv = model.cls_head.debias_head.f1_conv3d.conv
    assert conv.in_channels == model.backbone.debias_channels
    assert conv.out_channels == 2 * model.backbone.debias_channels
    assert {"loss_ced", "hsic_12", "hsic_13", "loss_avu"} <= set(stats)


def test_ced_kernel_3_on_a_too_short_map_names_the_fix():
    model = _build("i3d_tiny", "dear")  # 8 frames -> T = 1 at stage 4
    with pytest.raises(ValueError, match="set head_options temporal_kernel: 1"):
        model.training_loss(_clips(), LABELS, anneal=0.1, iteration=0)


def test_tpn_auxiliary_head_adds_half_cross_entropy():
    model = _build("tpn_tiny", "softmax").eval()  # eval: no dropout, BN running stats
    assert model.aux_head is not None and model.aux_head.conv.conv.in_channels == model.backbone.aux_channels
    clips = _clips()
    loss, stats = model.training_loss(clips, LABELS, anneal=0.1, iteration=0)
    out = model.backbone.forward_features(clips)
    aux = 0.5 * F.cross_entropy(model.aux_head(out.aux_map), LABELS)
    cls = F.cross_entropy(model(clips).logits, LABELS)
    assert stats["loss_aux"] == pytest.approx(aux.item(), rel=1e-5)
    assert loss.item() == pytest.approx((cls + aux).item(), rel=1e-5)
    assert _build("i3d_tiny", "softmax").aux_head is None


def test_predict_averages_logits_over_views():
    model = _build("i3d_tiny", "edl")
    clips = torch.randn(2, 3, 3, 8, 32, 32)
    pred = model.predict(clips)
    model.eval()
    per_view = [model(clips[:, v]) for v in range(3)]
    assert torch.allclose(pred.logits, torch.stack([o.logits for o in per_view]).mean(0), atol=1e-5)
    assert torch.allclose(pred.features, torch.stack([o.features for o in per_view]).mean(0), atol=1e-5)
    assert pred.sample_logits is None
    with pytest.raises(ValueError, match=r"expected clips \(B, V, C, T, H, W\)"):
        model.predict(clips[:, 0])
    with pytest.raises(ValueError, match="stochastic_passes must be an integer >= 1"):
        model.predict(clips, stochastic_passes=0)


def test_mc_dropout_passes_keep_batchnorm_in_eval():
    model = _build("i3d_tiny", "softmax")
    bn = next(m for m in model.modules() if isinstance(m, nn.BatchNorm3d))
    running = bn.running_mean.clone()
    clips = torch.randn(3, 2, 3, 8, 32, 32)
    pred = model.predict(clips, stochastic_passes=4)
    assert torch.equal(bn.running_mean, running)  # BN statistics untouched
    assert not torch.allclose(pred.sample_logits[0], pred.sample_logits[1])  # dropout on
    # with dropout 0 the softmax head has no randomness left: every pass equals the deterministic one
    still = _build("i3d_tiny", "softmax", dropout=0.0)
    p0 = still.predict(clips, stochastic_passes=3)
    assert torch.allclose(p0.sample_logits, p0.logits.expand(3, -1, -1), atol=1e-6)


def test_bnn_passes_sample_weights():
    model = _build("i3d_tiny", "bnn", dropout=0.0)
    pred = model.predict(torch.randn(2, 1, 3, 8, 32, 32), stochastic_passes=3)
    assert not torch.allclose(pred.sample_logits[0], pred.sample_logits[1])


def test_module_and_classifier_names_follow_mmaction2():
    names = set(dict(_build("tpn_tiny", "dear", head_options={"temporal_kernel": 1}).named_parameters()))
    assert {"cls_head.fc_cls.weight", "cls_head.debias_head.f1_conv3d.conv.weight",
            "cls_head.debias_head.f3_fc.bias", "aux_head.fc.weight"} <= names
    assert any(n.startswith("backbone.") for n in names)
    for backbone, head in [("tsm_tiny", "softmax"), ("tpn_tiny", "dear"), ("i3d_tiny", "bnn"),
                           ("i3d_tiny", "rpl"), ("r3d18_tiny", "sdn")]:
        model = _build(backbone, head)
        classifier = model.classifier_parameter_names()
        assert classifier <= set(dict(model.named_parameters()))
        assert all(n.startswith(("cls_head.", "aux_head.")) for n in classifier)
    assert _build("tsm_tiny", "softmax").classifier_parameter_names() == {
        "cls_head.fc_cls.weight", "cls_head.fc_cls.bias"}


def test_sdn_uses_masked_clips_and_other_heads_ignore_side_inputs():
    clips = _clips()
    extra = _sdn_inputs(clips)
    sdn = _build("r3d18_tiny", "sdn")
    _, stats = sdn.training_loss(clips, LABELS, anneal=0.1, iteration=0, **extra)
    assert {"loss_scene", "loss_mask", "mask_entropy"} <= set(stats)
    _, stats = sdn.training_loss(clips, LABELS, anneal=0.1, iteration=0, scene=extra["scene"])
    assert "loss_mask" not in stats
    with pytest.raises(ValueError, match="needs scene pseudo-labels"):
        sdn.training_loss(clips, LABELS, anneal=0.1, iteration=0)
    softmax = _build("r3d18_tiny", "softmax").eval()
    plain, _ = softmax.training_loss(clips, LABELS, anneal=0.1, iteration=0)
    with_side, stats = softmax.training_loss(clips, LABELS, anneal=0.1, iteration=0, **extra)
    assert with_side.item() == pytest.approx(plain.item()) and "loss_mask" not in stats


def test_training_reduces_the_loss_on_a_fixed_batch():
    model = _build("tsm_tiny", "dear", dropout=0.0)
    clips = _clips()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for it in range(5):
        loss, stats = model.training_loss(clips, LABELS, anneal=0.5, iteration=it)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(stats["loss_cls"])
    assert losses[-1] < losses[0]


def test_bad_names_options_and_labels():
    with pytest.raises(UnknownNameError, match="unknown backbone 'c3d'; known backbones: .*i3d_tiny"):
        build_recognizer(backbone="c3d", head="softmax", num_classes=K)
    with pytest.raises(UnknownNameError, match="unknown head 'openmax'; known heads: bnn, dear"):
        build_recognizer(backbone="i3d_tiny", head="openmax", num_classes=K)
    with pytest.raises(ValueError, match=r"head 'rpl' got unknown option\(s\) \['metrc'\]"):
        build_recognizer(backbone="i3d_tiny", head="rpl", num_classes=K, head_options={"metrc": "l2"})
    with pytest.raises(ValueError, match=r"head_options may not set \['num_classes'\]"):
        build_recognizer(backbone="i3d_tiny", head="edl", num_classes=K, head_options={"num_classes": 3})
    with pytest.raises(ValueError, match="dropout must be in"):
        build_recognizer(backbone="i3d_tiny", head="edl", num_classes=K, dropout=1.0)
    model = _build("i3d_tiny", "softmax")
    with pytest.raises(ValueError, match=r"labels must be in \[0, 4\), got values in \[0, 7\]"):
        model.training_loss(_clips(), torch.tensor([0, 1, 2, 7]), anneal=0.1, iteration=0)
    with pytest.raises(ValueError, match=r"labels must be \(4,\)"):
        model.training_loss(_clips(), LABELS[:3], anneal=0.1, iteration=0)


class _NoDebiasBackbone(nn.Module):
    """A contract-following backbone without a debias map (none of the registered ones)."""

    num_features, debias_channels, aux_channels = 8, 0, 0
    segmental, head_init_std = False, 0.01

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv3d(3, 8, 1)

    def forward_features(self, x):
        y = self.conv(x)
        return BackboneOutput(maps=(y,), debias_map=y, aux_map=None)


def test_ced_heads_need_a_backbone_with_a_debias_map(monkeypatch):
    monkeypatch.setattr(recognizer_module, "create_backbone", lambda name, **kw: _NoDebiasBackbone())
    with pytest.raises(ValueError, match="head 'dear_alt' needs a backbone with a debias map .*"
                                         "backbone 'flat' has debias_channels=0"):
        build_recognizer(backbone="flat", head="dear_alt", num_classes=K)
    model = build_recognizer(backbone="flat", head="softmax", num_classes=K)  # other heads are fine
    assert model(torch.randn(2, 3, 2, 4, 4)).logits.shape == (2, K)
    assert create_backbone("i3d_tiny").debias_channels > 0
