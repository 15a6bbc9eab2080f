"""Heads on pooled features / debias maps, checked against the loss functions and hand computations."""

import pytest
import torch
import torch.nn.functional as F

from dear_ray.losses import (
    avu_loss,
    bnn_kl,
    ced_alternating_loss,
    ced_joint_loss,
    dirichlet_alpha,
    edl_loss,
    rpl_loss,
    sdn_mask_loss,
    sdn_scene_loss,
)
from dear_ray.models.heads import HeadInputs, create_aux_head, create_debias_head, create_head, list_heads
from dear_ray.registry import UnknownNameError

B, F_DIM, K = 6, 8, 4
LABELS = torch.tensor([0, 1, 2, 3, 0, 1])


pytestmark = pytest.mark.usefixtures("seed_and_one_thread")


def _features(requires_grad=False):
    return torch.randn(B, F_DIM, requires_grad=requires_grad)


def _inputs(features, **kw):
    return HeadInputs(features=features, labels=LABELS, anneal=kw.pop("anneal", 0.3),
                      iteration=kw.pop("iteration", 1), **kw)


def test_registry_names_and_errors():
    assert list_heads() == ["bnn", "dear", "dear_alt", "edl", "edl_avu", "psl", "rpl", "sdn", "softmax"]
    with pytest.raises(UnknownNameError, match="unknown head 'mc_dropout'; known heads: bnn, dear"):
        create_head("mc_dropout", in_features=F_DIM, num_classes=K)
    with pytest.raises(ValueError, match=r"head 'edl' got unknown option\(s\) \['disentangle'\]; "
                                         r"it takes \[.*'evidence'.*\]"):
        create_head("edl", in_features=F_DIM, num_classes=K, disentangle=True)
    with pytest.raises(ValueError, match="evidence must be one of"):
        create_head("edl", in_features=F_DIM, num_classes=K, evidence="sigmoid")
    with pytest.raises(ValueError, match="num_classes must be a positive integer, got 0"):
        create_head("softmax", in_features=F_DIM, num_classes=0)


def test_softmax_head():
    head = create_head("softmax", in_features=F_DIM, num_classes=K)
    f = _features()
    logits = f @ head.fc_cls.weight.t() + head.fc_cls.bias
    assert torch.allclose(head(f), logits)
    loss, stats = head.loss(_inputs(f))
    assert loss.item() == pytest.approx(F.cross_entropy(logits, LABELS).item())
    assert stats["acc"] == pytest.approx(float((logits.argmax(1) == LABELS).float().mean()))
    assert head.classifier_parameter_names() == {"fc_cls.weight", "fc_cls.bias"}
    assert float(head.fc_cls.weight.detach().std()) == pytest.approx(0.01, rel=0.3)  # N(0, 0.01^2) init


def test_bnn_head_mean_weights_sampling_and_loss():
    head = create_head("bnn", in_features=F_DIM, num_classes=K)
    layer = head.fc_cls
    f = _features()
    assert torch.allclose(head(f), F.linear(f, layer.weight_mu, layer.bias_mu))
    assert not torch.allclose(head(f, sample=True), head(f, sample=True))
    torch.manual_seed(5)
    loss, stats = head.loss(_inputs(f))
    # replay the same two draws (weight noise then bias noise, per draw)
    torch.manual_seed(5)
    logits, kls = [], []
    for _ in range(2):
        w = layer.weight_mu + F.softplus(layer.weight_rho) * torch.randn_like(layer.weight_mu)
        b = layer.bias_mu + F.softplus(layer.bias_rho) * torch.randn_like(layer.bias_mu)
        logits.append(F.linear(f, w, b))
        kls.append(bnn_kl([w, b], [layer.weight_mu, layer.bias_mu], [layer.weight_rho, layer.bias_rho]))
    expected = F.cross_entropy(torch.stack(logits).mean(0), LABELS) + 1e-6 * torch.stack(kls).mean()
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)
    assert stats["loss_complexity"] == pytest.approx(1e-6 * torch.stack(kls).mean().item(), rel=1e-6)
    loss.backward()
    assert all(float(p.grad.abs().sum()) > 0 for p in head.parameters())
    assert head.classifier_parameter_names() == {"fc_cls.weight_mu", "fc_cls.weight_rho",
                                                 "fc_cls.bias_mu", "fc_cls.bias_rho"}


@pytest.mark.parametrize("metric", ["dot", "l2"])
def test_rpl_head(metric):
    head = create_head("rpl", in_features=F_DIM, num_classes=K, metric=metric, temperature=2.0)
    f = _features()
    expected_logits = f @ head.points.t() if metric == "dot" else torch.cdist(f, head.points) ** 2 / F_DIM
    assert torch.allclose(head(f), expected_logits, atol=1e-5)
    loss, _ = head.loss(_inputs(f))
    ref, _ = rpl_loss(f, head.points, head.radius, LABELS, metric=metric, temperature=2.0)
    assert loss.item() == pytest.approx(ref.item())
    loss.backward()
    assert head.radius.grad is not None and head.points.grad.abs().sum() > 0


@pytest.mark.parametrize(("name", "options"), [
    ("edl", {}), ("edl", {"evidence": "softplus", "loss_type": "mse", "kl": True}),
    ("edl_avu", {}), ("edl_avu", {"disentangle": True, "loss_type": "digamma"}),
])
def test_edl_heads_compose_the_losses(name, options):
    head = create_head(name, in_features=F_DIM, num_classes=K, **options)
    f = _features()
    loss, stats = head.loss(_inputs(f, anneal=0.3))
    alpha = dirichlet_alpha(head(f), options.get("evidence", "exp"))
    expected, _ = edl_loss(alpha, LABELS, loss_type=options.get("loss_type", "log"),
                           kl_weight=0.3 if options.get("kl") else 0.0)
    if name == "edl_avu":
        expected = expected + avu_loss(alpha, LABELS, anneal=0.3,
                                       disentangle=options.get("disentangle", False))[0]
        assert "loss_avu" in stats
    else:
        assert "loss_avu" not in stats
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)


def _debias_map(t=4, c=6, h=4, w=4):
    return torch.randn(B, c, t, h, w)


def test_debias_head_shapes_and_names():
    head = create_debias_head(in_channels=6, num_classes=K)
    out = head(_debias_map())
    assert [a.shape for a in out.alphas] == [torch.Size([B, K])] * 3
    assert [z.shape for z in out.features] == [torch.Size([B, 12])] * 3  # width = 2C
    assert all(bool((a > 1).all()) for a in out.alphas)
    assert head.f1_conv3d.conv.weight.shape == (12, 6, 3, 3, 3)
    assert head.f3_conv2d.conv.weight.shape == (12, 6, 3, 3)
    narrow = create_debias_head(in_channels=6, num_classes=K, width=5, temporal_kernel=1)
    assert narrow.f2_conv3d.conv.weight.shape == (5, 6, 1, 3, 3) and narrow.f1_fc.in_features == 5
    with pytest.raises(ValueError, match="temporal_kernel must be 1 or 3, got 2"):
        create_debias_head(in_channels=6, num_classes=K, temporal_kernel=2)
    with pytest.raises(ValueError, match=r"needs a debias map with T >= 3, got \(6, 6, 2, 4, 4\)"):
        head(_debias_map(t=2))


def test_temporal_shuffle_is_a_no_op_with_kernel_1_known_flaw():
    """DEAR issue #9: with a (1, 3, 3) kernel the f2 branch pools away the frame order, so the
    'bias_input' branch sees the same thing as an unshuffled one; the 3x3x3 kernel fixes it."""
    x = _debias_map(t=5)
    reverse = torch.arange(4, -1, -1)
    identity = torch.arange(5)
    for kernel, shuffle_matters in ((1, False), (3, True)):
        head = create_debias_head(in_channels=6, num_classes=K, temporal_kernel=kernel).eval()
        z_shuffled = head(x, time_permutation=reverse).features[1]
        z_plain = head(x, time_permutation=identity).features[1]
        assert torch.allclose(z_shuffled, z_plain, atol=1e-5) is not shuffle_matters
        # f1 never sees the shuffle
        assert torch.equal(head(x, time_permutation=reverse).features[0],
                           head(x, time_permutation=identity).features[0])


@pytest.mark.parametrize("name", ["dear", "dear_alt"])
def test_dear_heads_add_the_ced_loss(name):
    head = create_head(name, in_features=F_DIM, num_classes=K, debias_channels=6).eval()
    f, x = _features(), _debias_map()
    torch.manual_seed(3)
    loss, stats = head.loss(_inputs(f, iteration=4, debias_map=x))
    alpha = dirichlet_alpha(head(f))
    expected = edl_loss(alpha, LABELS)[0] + avu_loss(alpha, LABELS, anneal=0.3)[0]
    torch.manual_seed(3)  # same frame shuffle
    branches = head.debias_head(x)
    if name == "dear":
        ced, _ = ced_joint_loss(branches.alphas, LABELS)
    else:
        ced, _ = ced_alternating_loss(branches.alphas, branches.features, LABELS, iteration=4)
        assert stats["hsic_phase"] == -1.0
    assert loss.item() == pytest.approx((expected + ced).item(), rel=1e-5)
    assert {"loss_cls", "loss_avu", "loss_ced", "hsic_12", "hsic_13"} <= set(stats)
    assert {"debias_head.f1_fc.weight", "fc_cls.bias"} <= head.classifier_parameter_names()
    with pytest.raises(ValueError, match="needs HeadInputs.debias_map"):
        head.loss(_inputs(f))
    with pytest.raises(ValueError, match="need a backbone with a debias map"):
        create_head(name, in_features=F_DIM, num_classes=K, debias_channels=0)


def _sdn_head(**kw):
    return create_head("sdn", in_features=F_DIM, num_classes=K, num_places=5, **kw)


def test_sdn_head_loss_and_structure():
    head = _sdn_head(num_place_hidden_layers=2, alpha=0.5)
    names = {n for n, _ in head.named_parameters()}
    assert {"place_mlp.0.fc.weight", "place_mlp.1.bn.weight", "place_mlp.p_last_fc.weight"} <= names
    f = _features()
    scene = torch.softmax(torch.randn(B, 5), 1)
    masked = _features()
    loss, stats = head.loss(_inputs(f, scene=scene, masked_features=masked))
    expected = (F.cross_entropy(head(f), LABELS) + sdn_scene_loss(head.place_mlp(f), scene)[0]
                + sdn_mask_loss(head(masked))[0])
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)
    assert {"loss_cls", "loss_scene", "loss_mask", "mask_entropy", "acc"} <= set(stats)
    hard, _ = _sdn_head(scene_labels="hard").loss(_inputs(f, scene=scene))
    assert torch.isfinite(hard)
    with pytest.raises(ValueError, match="needs scene pseudo-labels"):
        head.loss(_inputs(f))
    with pytest.raises(ValueError, match=r"must be \(B, 5\) \(num_places=5\), got \(6, 4\)"):
        head.loss(_inputs(f, scene=scene[:, :4]))


def test_sdn_scene_branch_reverses_and_scales_the_feature_gradient():
    head = _sdn_head(alpha=0.5, num_place_hidden_layers=0)
    scene = torch.softmax(torch.randn(B, 5), 1)
    f = _features(requires_grad=True)
    sdn_scene_loss(head.scene_logits(f), scene)[0].backward()
    g_reversed = f.grad.clone()
    f.grad = None
    sdn_scene_loss(head.place_mlp(f), scene)[0].backward()
    assert torch.allclose(g_reversed, -0.5 * f.grad)
    assert float(f.grad.abs().sum()) > 0


def test_sdn_mask_term_step_increases_action_entropy():
    """Paper intent (SPEC 1.7): a descent step on the mask term makes the action prediction on
    masked clips less certain, both through the features and through the classifier."""
    head = _sdn_head()
    with torch.no_grad():  # a confident classifier, far from maximal entropy
        head.fc_cls.weight.normal_(std=1.0)
    f, scene = _features(), torch.softmax(torch.randn(B, 5), 1)
    masked = (3 * _features()).requires_grad_(True)
    with_mask, _ = head.loss(_inputs(f, scene=scene, masked_features=masked))
    without, _ = head.loss(_inputs(f, scene=scene))
    grads = torch.autograd.grad(with_mask - without, [masked, head.fc_cls.weight])

    def entropy(feat, weight):
        return -sdn_mask_loss(F.linear(feat, weight, head.fc_cls.bias))[0]

    before = entropy(masked, head.fc_cls.weight)
    assert entropy(masked - 0.5 * grads[0], head.fc_cls.weight) > before
    assert entropy(masked, head.fc_cls.weight - 0.5 * grads[1]) > before


def test_aux_head_is_half_cross_entropy():
    head = create_aux_head(in_channels=6, num_classes=K).eval()
    x = _debias_map()
    loss, stats = head.loss(x, LABELS)
    assert loss.item() == pytest.approx(0.5 * F.cross_entropy(head(x), LABELS).item())
    assert head.conv.conv.weight.shape == (12, 6, 1, 3, 3) and head.fc.in_features == 12
    assert stats["loss_aux"] == pytest.approx(loss.item())


def _std(t):
    return float(t.detach().std())


@pytest.mark.parametrize(("backbone", "std"), [("i3d_tiny", 0.01), ("slowfast_tiny", 0.01),
                                               ("tpn_tiny", 0.01), ("tsm_tiny", 0.001)])
def test_classifier_and_reciprocal_point_init_std_follow_the_released_heads(backbone, std):
    """MMAction2 0.x / DEAR: I3DHead, SlowFastHead, TPNHead and their RPL variants init_std 0.01;
    TSMHead and TSMRPLHead 0.001 (mmcv normal_init of fc_cls / fc_centers); DEAR's DebiasHead 0.01
    on every backbone."""
    from dear_ray.models import build_recognizer

    torch.manual_seed(0)
    for head in ("softmax", "rpl", "dear"):
        options = {"temporal_kernel": 1} if head == "dear" else {}
        model = build_recognizer(backbone=backbone, head=head, num_classes=16, head_options=options)
        weight = model.cls_head.points if head == "rpl" else model.cls_head.fc_cls.weight
        assert _std(weight) == pytest.approx(std, rel=0.1), head
        if head == "dear":
            assert _std(model.cls_head.debias_head.f1_fc.weight) == pytest.approx(0.01, rel=0.1)
    explicit = build_recognizer(backbone=backbone, head="rpl", num_classes=16,
                                head_options={"init_std": 0.05})
    assert _std(explicit.cls_head.points) == pytest.approx(0.05, rel=0.1)
    with pytest.raises(ValueError, match="init_std must be > 0"):
        create_head("rpl", in_features=F_DIM, num_classes=K, init_std=0.0)


def test_ced_f3_conv2d_keeps_mmcv_convmodule_kaiming_init():
    """DEAR's DebiasHead.init_weights re-inits only Conv3d (xavier-uniform), Linear and BN3d; f3's
    Conv2d keeps mmcv 1.x ConvModule's kaiming_normal(fan_out, relu): std sqrt(2 / (9 * width))."""
    torch.manual_seed(0)
    c, width = 32, 64
    head = create_debias_head(in_channels=c, num_classes=K)
    f3 = head.f3_conv2d.conv.weight.detach()
    assert _std(f3) == pytest.approx((2 / (9 * width)) ** 0.5, rel=0.05)
    f1 = head.f1_conv3d.conv.weight.detach()  # xavier-uniform: U(-a, a), a = sqrt(6 / (fan_in + fan_out))
    bound = (6 / (27 * c + 27 * width)) ** 0.5
    assert float(f1.abs().max()) <= bound and float(f1.abs().max()) > 0.95 * bound
    assert torch.equal(head.f3_conv2d.bn.weight, torch.ones(width))
    xavier = create_debias_head(in_channels=c, num_classes=K, f3_init="xavier").f3_conv2d.conv.weight.detach()
    assert float(xavier.abs().max()) <= (6 / (9 * c + 9 * width)) ** 0.5
    with pytest.raises(ValueError, match="f3_init must be one of"):
        create_debias_head(in_channels=c, num_classes=K, f3_init="normal")


@pytest.mark.parametrize("name", ["edl_avu", "dear"])
def test_no_avu_term_with_the_mse_form_as_released(name):
    """DEAR's EvidenceLoss.mse_loss computes no AvU term (its `with_avuloss` branch there is a stub):
    L = sum_k (Y_k - p_k)^2 + p_k (1 - p_k) / (S + 1), nothing else (dear: + the CED term)."""
    extra = {"debias_channels": 6, "temporal_kernel": 1} if name == "dear" else {}
    head = create_head(name, in_features=F_DIM, num_classes=K, loss_type="mse", **extra)
    f = _features()
    inputs = _inputs(f, debias_map=_debias_map(t=2)) if name == "dear" else _inputs(f)
    torch.manual_seed(1)
    loss, stats = head.loss(inputs)
    alpha = torch.exp(torch.clamp(head(f), -10, 10)) + 1
    s = alpha.sum(1, keepdim=True)
    p = alpha / s
    y = F.one_hot(LABELS, K).float()
    expected = ((y - p) ** 2 + p * (1 - p) / (s + 1)).sum(1).mean()
    if name == "dear":
        expected = expected + stats["loss_ced"]
    assert "loss_avu" not in stats
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    with_avu = create_head(name, in_features=F_DIM, num_classes=K, loss_type="mse", mse_avu=True, **extra)
    with_avu.load_state_dict(head.state_dict())
    torch.manual_seed(1)
    loss_avu, stats_avu = with_avu.loss(inputs)
    assert "loss_avu" in stats_avu
    assert loss_avu.item() == pytest.approx(loss.item() + stats_avu["loss_avu"], rel=1e-5)


def test_bnn_test_pass_options():
    head = create_head("bnn", in_features=F_DIM, num_classes=K, test_samples=3, test_mean_weight=False)
    assert not head.mc_dropout and create_head("softmax", in_features=F_DIM, num_classes=K).mc_dropout
    f = _features()
    torch.manual_seed(2)
    out = head(f, sample=True)
    torch.manual_seed(2)
    draws = [F.linear(f, *head.fc_cls.sample()) for _ in range(3)]
    assert torch.allclose(out, torch.stack(draws).mean(0), atol=1e-6)
    with pytest.raises(ValueError, match="test_samples must be a positive integer"):
        create_head("bnn", in_features=F_DIM, num_classes=K, test_samples=0)
