"""Test-time passes and view averaging as DEAR's scripts compute them, against hand computations.

Released code (Cogito2012/DEAR b752998): experiments/ood_detection.py `run_stochastic_inference` runs
`npass` forward passes; each pass is one `forward_test` of all views, which the recognizer combines
with `average_clip` (mmaction/models/recognizers/base.py: 'prob' = mean of the per-view softmax,
'score' = mean of the logits); `compute_uncertainty` then takes BALD = H[mean_n p_n] - mean_n H[p_n]
(xlogy) over the passes' combined scores. TSM heads (heads/tsm_head.py) drop out and classify each
segment, then average them; BNN heads (heads/bnn.py `BayesianPredictor`, testing=True, with
`test_cfg.npass = 1` set by the scripts) average one sampled-weight logit with the mean-weight one.
"""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy.special import xlogy

from dear_ray.models import build_recognizer
from dear_ray.models.heads import BayesianLinear
from dear_ray.models.recognizer import average_views

K = 4

pytestmark = pytest.mark.usefixtures("seed_and_one_thread")


def _bald(p: np.ndarray) -> np.ndarray:
    """DEAR's compute_uncertainty(method='BALD') on scores (B, K, S)."""
    mean = p.mean(axis=-1)
    return -xlogy(mean, mean).sum(axis=1) + xlogy(p, p).sum(axis=1).mean(axis=-1)


def _ours(sample_logits: torch.Tensor) -> np.ndarray:
    """(S, B, K) pass logits -> DEAR's (B, K, S) scores."""
    return sample_logits.softmax(-1).permute(1, 2, 0).double().numpy()


def test_tsm_mc_dropout_drops_each_segment_then_averages_segments():
    model = build_recognizer(backbone="tsm_tiny", head="softmax", num_classes=K, dropout=0.5)
    with torch.no_grad():
        model.cls_head.fc_cls.weight.normal_(0.0, 0.5)  # logits far enough apart to matter
    b, v, s = 2, 2, 5
    clips = torch.randn(b, v, 3, 8, 32, 32)
    torch.manual_seed(11)
    pred = model.predict(clips, stochastic_passes=s, average_clips="prob")

    model.eval()
    with torch.no_grad():
        feat = model.backbone.forward_features(clips.flatten(0, 1)).maps[0]  # (B*V, C, T, H, W)
        c, t = feat.shape[1:3]
        frames = feat.transpose(1, 2).reshape(-1, c, *feat.shape[3:]).mean(dim=(2, 3))  # (B*V*T, C)
    w, bias = model.cls_head.fc_cls.weight, model.cls_head.fc_cls.bias
    torch.manual_seed(11)
    passes = []
    for _ in range(s):  # TSMHead: nn.Dropout on the (N * num_segs, C) frame features, fc, consensus
        mask = F.dropout(torch.ones_like(frames), 0.5, training=True)
        scores = ((frames * mask) @ w.t() + bias).view(b * v, t, K).mean(dim=1)
        passes.append(scores.view(b, v, K).softmax(-1).mean(dim=1))  # average_clips='prob'
    expected = torch.stack(passes, dim=-1).detach().double().numpy()  # (B, K, S)
    np.testing.assert_allclose(_ours(pred.sample_logits), expected, atol=1e-6)
    np.testing.assert_allclose(_bald(_ours(pred.sample_logits)), _bald(expected), atol=1e-6)
    assert _bald(expected).min() > 1e-4
    # the deterministic logits: no dropout, consensus of the segments' scores
    det = (frames @ w.t() + bias).view(b * v, t, K).mean(dim=1).view(b, v, K)
    assert torch.allclose(pred.logits.softmax(-1), det.softmax(-1).mean(dim=1), atol=1e-6)


def test_tsm_training_dropout_is_per_segment():
    model = build_recognizer(backbone="tsm_tiny", head="softmax", num_classes=K, dropout=0.5).train()
    clips = torch.randn(2, 3, 8, 32, 32)
    seen = {}
    model.cls_head.register_forward_pre_hook(lambda _m, args: seen.update(x=args[0]))
    torch.manual_seed(3)
    model(clips)
    torch.manual_seed(3)  # BN in train mode does not draw random numbers: same masks follow
    feat = model.backbone.forward_features(clips).maps[0]
    frames = feat.mean(dim=(3, 4)).transpose(1, 2).reshape(-1, feat.shape[1])  # (B*T, C)
    mask = F.dropout(torch.ones_like(frames), 0.5, training=True)
    expected = (frames * mask).view(2, 8, -1).mean(dim=1)  # fc is linear: fc(mean) = mean(fc)
    assert torch.allclose(seen["x"], expected, atol=1e-6)


class _FixedDraws:
    """Replaces BayesianLinear.sample by a known sequence of (weight, bias) draws."""

    def __init__(self, draws):
        self.draws, self.calls = list(draws), 0

    def __call__(self, layer):
        self.calls += 1
        return self.draws[self.calls - 1]


@pytest.mark.parametrize("mean_weight", [True, False])
def test_bnn_pass_averages_a_weight_draw_with_the_mean_weights_and_never_drops(monkeypatch, mean_weight):
    # dropout 0.5 in the recognizer: DEAR switches dropout on at test only for "dnn" configs
    model = build_recognizer(backbone="i3d_tiny", head="bnn", num_classes=K, dropout=0.5,
                             head_options={"test_mean_weight": mean_weight})
    layer = model.cls_head.fc_cls
    f = layer.in_features
    draws = [(torch.randn(K, f) * 0.5, torch.randn(K) * 0.5) for _ in range(3)]
    fixed = _FixedDraws(draws)
    monkeypatch.setattr(BayesianLinear, "sample", lambda self: fixed(self))
    b, v = 3, 2
    clips = torch.randn(b, v, 3, 8, 32, 32)
    pred = model.predict(clips, stochastic_passes=3, average_clips="prob")
    assert fixed.calls == 3  # one draw a pass, shared by every video and view

    model.eval()
    with torch.no_grad():
        x = model.backbone.forward_features(clips.flatten(0, 1)).maps[0].mean(dim=(2, 3, 4))
        z_mean = x @ layer.weight_mu.t() + layer.bias_mu
        passes = []
        for w, bias in draws:  # BayesianPredictor(npass=1, testing=True): mean of [sampled, mean]
            z = (x @ w.t() + bias + z_mean) / 2 if mean_weight else x @ w.t() + bias
            passes.append(z.view(b, v, K).softmax(-1).mean(dim=1))
    expected = torch.stack(passes, dim=-1).double().numpy()
    np.testing.assert_allclose(_ours(pred.sample_logits), expected, atol=1e-6)
    np.testing.assert_allclose(_bald(_ours(pred.sample_logits)), _bald(expected), atol=1e-6)
    assert torch.allclose(pred.logits.softmax(-1), z_mean.view(b, v, K).softmax(-1).mean(1), atol=1e-6)


def test_average_clips_prob_is_the_log_of_the_mean_view_softmax():
    model = build_recognizer(backbone="i3d_tiny", head="softmax", num_classes=K, dropout=0.0)
    with torch.no_grad():
        model.cls_head.fc_cls.weight.normal_(0.0, 1.0)
    clips = torch.randn(2, 3, 3, 8, 32, 32)
    prob = model.predict(clips, average_clips="prob", stochastic_passes=2)
    score = model.predict(clips, average_clips="score")
    model.eval()
    with torch.no_grad():
        per_view = torch.stack([model(clips[:, i]).logits for i in range(3)], dim=1)  # (B, V, K)
    mean_p = per_view.softmax(-1).mean(dim=1)
    assert torch.allclose(prob.logits, mean_p.log(), atol=1e-5)
    assert torch.allclose(prob.logits.softmax(-1), mean_p, atol=1e-6)
    assert torch.allclose(score.logits, per_view.mean(dim=1), atol=1e-5)
    assert not torch.allclose(prob.logits.softmax(-1), score.logits.softmax(-1), atol=1e-3)
    # dropout 0: every pass equals the deterministic output, under the same averaging
    assert torch.allclose(prob.sample_logits, prob.logits.expand(2, -1, -1), atol=1e-6)
    assert torch.allclose(prob.features, score.features)
    with pytest.raises(ValueError, match=r"average_clips must be one of \('score', 'prob'\), got 'mean'"):
        model.predict(clips, average_clips="mean")


def test_average_views_is_finite_for_far_apart_logits():
    z = torch.tensor([[2000.0, 0.0, -2000.0], [0.0, 2000.0, -2000.0]])  # one video, two views
    out = average_views(z, 2, "prob")
    assert torch.isfinite(out).all()
    assert torch.allclose(out.softmax(-1), torch.tensor([[0.5, 0.5, 0.0]]))
    assert torch.allclose(average_views(z, 2, "score"), z.mean(0, keepdim=True))


def test_mask_confusion_loss_is_the_weighted_negative_entropy_of_masked_clips():
    model = build_recognizer(backbone="r3d18_tiny", head="sdn", num_classes=K, dropout=0.0,
                             head_options={"num_places": 3, "mask_weight": 0.7}).eval()
    masked = torch.randn(3, 3, 8, 32, 32)
    loss, stats = model.mask_confusion_loss(masked)
    with torch.no_grad():
        p = model(masked).logits.softmax(-1)
    entropy = -(p * p.log()).sum(-1).mean()
    assert loss.item() == pytest.approx(-0.7 * entropy.item(), rel=1e-5)
    assert stats["loss"] == pytest.approx(loss.item())
    assert stats["mask_entropy"] == pytest.approx(entropy.item(), rel=1e-5)
    assert stats["loss_mask"] == pytest.approx(-entropy.item(), rel=1e-5)
    loss.backward()
    assert model.backbone.conv1.weight.grad is not None
    assert model.cls_head.place_mlp.p_last_fc.weight.grad is None  # the scene MLP takes no part
    softmax = build_recognizer(backbone="r3d18_tiny", head="softmax", num_classes=K)
    with pytest.raises(ValueError, match="has no mask-confusion term"):
        softmax.mask_confusion_loss(masked)


@pytest.mark.parametrize("scene_bn", [True, False])
def test_mask_step_moves_the_scene_mlps_batchnorm_statistics_as_sdns_whole_model_forward(scene_bn):
    # SDN libs/train_epoch.py train_adv_msk_epoch: model.train(), then model(inputs_masked) computes
    # every output, the scene MLP's too, so its BatchNorm1d running statistics move on the masked
    # batch (torch: running = 0.9 running + 0.1 batch, the variance unbiased) although msk_loss
    # sends it no gradient. By hand from the initial (0, 1): mean 0.1 m, var 0.9 + 0.1 v.
    import copy

    torch.manual_seed(0)
    model = build_recognizer(backbone="r3d18_tiny", head="sdn", num_classes=K, dropout=0.0,
                             head_options={"num_places": 3, "num_place_hidden_layers": 1,
                                           "mask_step_scene_bn": scene_bn}).train()
    reference = copy.deepcopy(model)
    bn = model.cls_head.place_mlp[0].bn
    masked = torch.randn(4, 3, 8, 32, 32)
    loss, _ = model.mask_confusion_loss(masked)
    with torch.no_grad():
        f = reference.backbone.forward_features(masked).maps[0].mean(dim=(2, 3, 4))
        h = reference.cls_head.place_mlp[0].fc(f)  # (4, F): the BatchNorm's input
        ref_loss, _ = reference.mask_confusion_loss(masked) if scene_bn else (loss, None)
    if scene_bn:
        assert torch.allclose(bn.running_mean, 0.1 * h.mean(0), atol=1e-6)
        assert torch.allclose(bn.running_var, 0.9 + 0.1 * h.var(0, unbiased=True), atol=1e-5)
        assert bn.num_batches_tracked.item() == 1
    else:
        assert torch.equal(bn.running_mean, torch.zeros_like(bn.running_mean))
        assert torch.equal(bn.running_var, torch.ones_like(bn.running_var))
        assert bn.num_batches_tracked.item() == 0
    assert h.mean(0).abs().max() > 1e-3  # the statistics really differ from the initial ones
    # nothing else depends on it: the loss, its gradients, no gradient for the scene MLP
    loss.backward()
    assert model.cls_head.place_mlp.p_last_fc.weight.grad is None
    assert model.cls_head.place_mlp[0].fc.weight.grad is None
    other = build_recognizer(backbone="r3d18_tiny", head="sdn", num_classes=K, dropout=0.0,
                             head_options={"num_places": 3, "num_place_hidden_layers": 1,
                                           "mask_step_scene_bn": not scene_bn}).train()
    other.load_state_dict(reference.state_dict())
    other_loss, _ = other.mask_confusion_loss(masked)
    other_loss.backward()
    assert torch.equal(loss, other_loss)
    assert torch.equal(model.backbone.conv1.weight.grad, other.backbone.conv1.weight.grad)
    # a single masked clip cannot be batch-normalised: the statistics are left alone then
    before = bn.running_mean.clone()
    model.mask_confusion_loss(torch.randn(1, 3, 8, 64, 64))  # stage 4 keeps 1 x 2 x 2 values
    assert torch.equal(bn.running_mean, before)
    with pytest.raises(ValueError, match="mask_step_scene_bn must be true or false"):
        build_recognizer(backbone="r3d18_tiny", head="sdn", num_classes=K,
                         head_options={"mask_step_scene_bn": "yes"})


def test_pass_seeds_repeat_the_draws_of_every_batch_like_dears_update_seed():
    """DEAR reseeds pass n of every batch with n * 1234: pass n gets the same masks / weight draws
    whatever batch it runs on, and the caller's RNG is left as it was."""
    model = build_recognizer(backbone="i3d_tiny", head="softmax", num_classes=K, dropout=0.5)
    clips = torch.randn(2, 1, 3, 8, 32, 32)
    seeds = [n * 1234 for n in range(3)]
    state = torch.get_rng_state()
    first = model.predict(clips, stochastic_passes=3, pass_seeds=seeds)
    assert torch.equal(torch.get_rng_state(), state)
    second = model.predict(clips, stochastic_passes=3, pass_seeds=seeds)
    assert torch.equal(first.sample_logits, second.sample_logits)
    assert not torch.allclose(first.sample_logits[0], first.sample_logits[1])
    bnn = build_recognizer(backbone="i3d_tiny", head="bnn", num_classes=K, dropout=0.0)
    a = bnn.predict(clips, stochastic_passes=2, pass_seeds=[0, 1234]).sample_logits
    b = bnn.predict(clips[:1], stochastic_passes=2, pass_seeds=[0, 1234]).sample_logits
    assert torch.allclose(a[:, :1], b, atol=1e-6)  # the same weight draw for another batch
    with pytest.raises(ValueError, match="pass_seeds must have one seed per pass"):
        model.predict(clips, stochastic_passes=3, pass_seeds=[1, 2])
