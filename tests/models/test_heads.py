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
    assert list_heads() == ["bnn", "dear", "dear_alt", "edl", "edl_avu", "rpl", "sdn", "softmax"]
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
