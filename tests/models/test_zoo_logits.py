"""MMAction2 / DEAR / SDN checkpoints give the logits of the original heads' computation.

For every backbone x head of the paper sweep (jobs/sweeps/dear_ucf101.yaml: i3d, tsm, slowfast, tpn x
softmax, bnn, rpl, dear) a state dict in the released layout, built from random weights of the tiny
presets, is loaded and the recognizer's logits are compared with a hand-written reference of the
released head (Cogito2012/DEAR b752998 mmaction/models/heads/*.py, MMAction2 0.x):
- I3DHead / TPNHead: average-pool (T, H, W), fc.
- SlowFastHead (and DEAR's SlowFast BNN/RPL heads): the backbone returns (x_slow, x_fast), the head
  unpacks them as `x_fast, x_slow = x` and concatenates `(x_slow, x_fast)`: the FAST pathway's
  pooled features come first.
- TSMHead: pool each frame over (H, W), fc per segment, average the segments (AvgConsensus).
- fc by head: `cls_head.fc_cls` (softmax, DEAR's EDL head), the BNN's posterior means
  `cls_head.bnn_cls.bnn_layer.{weight,bias}_mu` (eval mode), RPL's `x @ fc_centers.weight^T`.
"""

import pytest
import torch
import torch.nn.functional as F

from dear_ray.models import build_recognizer, export_weights, load_checkpoint
from dear_ray.models.checkpoint import to_mmaction2_layout

K = 5
BACKBONES = ["i3d_tiny", "tsm_tiny", "slowfast_tiny", "tpn_tiny"]
HEADS = ["softmax", "bnn", "rpl", "dear"]
# dear_ray name prefix -> the released one (written out here, independently of checkpoint.py)
RELEASED_NAMES = {
    "cls_head.debias_head.": "debias_head.",               # DEAR: a recognizer-level debias head
    "cls_head.fc_cls.weight_": "cls_head.bnn_cls.bnn_layer.weight_",  # DEAR's BayesianPredictor
    "cls_head.fc_cls.bias_": "cls_head.bnn_cls.bnn_layer.bias_",
    "cls_head.points": "cls_head.fc_centers.weight",       # DEAR's RPL heads: a bias-free Linear
    "cls_head.radius": "cls_head.loss_cls.radius",         # DEAR's RPLoss parameter, shape (1,)
    "aux_head.": "neck.aux_head.",                         # MMAction2's TPN: aux head in the neck
    "backbone.neck.": "neck.",
}

pytestmark = pytest.mark.usefixtures("seed_and_one_thread")


def _build(backbone: str, head: str, seed: int):
    torch.manual_seed(seed)
    options = {"temporal_kernel": 1} if head == "dear" else {}
    return build_recognizer(backbone=backbone, head=head, num_classes=K, head_options=options)


def _released_state(model) -> dict[str, torch.Tensor]:
    """The model's keys under the released names, every float tensor random (BN statistics too)."""
    state = {}
    for key, value in model.state_dict().items():
        tensor = value.clone()
        if value.is_floating_point():
            tensor = torch.randn_like(value) * 0.5
            if key.endswith("running_var") or key.endswith("_rho"):
                tensor = tensor.abs() + 0.5 if key.endswith("running_var") else tensor - 4.0
        for ours, theirs in RELEASED_NAMES.items():
            if key.startswith(ours):
                key = theirs + key[len(ours):]
                break
        if key == "cls_head.loss_cls.radius":
            tensor = tensor.reshape(1)
        state[key] = tensor
    return state


def _reference_logits(model, state, clips: torch.Tensor, head: str) -> torch.Tensor:
    """The released head on the backbone's maps, with the checkpoint's tensors."""
    out = model.backbone.forward_features(clips)
    b = clips.shape[0]

    def classify(x):  # (N, F) -> (N, K)
        if head == "bnn":
            layer = "cls_head.bnn_cls.bnn_layer."
            return x @ state[layer + "weight_mu"].t() + state[layer + "bias_mu"]
        if head == "rpl":
            return x @ state["cls_head.fc_centers.weight"].t()
        return x @ state["cls_head.fc_cls.weight"].t() + state["cls_head.fc_cls.bias"]

    if type(model.backbone).__name__ == "ResNetTSM":
        (feat,) = out.maps  # (B, C, T, H, W), the backbone's (B*T, C, H, W) frames
        c, t = feat.shape[1], feat.shape[2]
        frames = feat.transpose(1, 2).reshape(b * t, c, *feat.shape[3:])
        per_segment = classify(F.adaptive_avg_pool2d(frames, 1).flatten(1))  # (B*T, K)
        return per_segment.view(b, t, -1).mean(dim=1)  # AvgConsensus
    if type(model.backbone).__name__ == "ResNet3dSlowFast":
        x_slow = out.debias_map  # the slow pathway (the backbone contract)
        x_fast = next(m for m in out.maps if m is not x_slow)
        pooled = torch.cat((x_fast.mean(dim=(2, 3, 4)), x_slow.mean(dim=(2, 3, 4))), dim=1)
        assert pooled.shape[1] == x_slow.shape[1] + x_fast.shape[1]
        return classify(pooled)
    (feat,) = out.maps
    return classify(feat.mean(dim=(2, 3, 4)))


@pytest.mark.parametrize("head", HEADS)
@pytest.mark.parametrize("backbone", BACKBONES)
def test_released_checkpoint_gives_the_released_heads_logits(tmp_path, backbone, head):
    released = _released_state(_build(backbone, head, seed=0))
    path = tmp_path / "zoo.pth"
    torch.save({"meta": {}, "state_dict": {f"module.{k}": v for k, v in released.items()}}, path)
    model = _build(backbone, head, seed=1)
    report = load_checkpoint(model, path)
    assert report.unexpected == [] and report.missing == [] and report.skipped_classifier == []
    model.eval()
    clips = torch.randn(2, 3, 8, 32, 32)
    with torch.no_grad():
        expected = _reference_logits(model, released, clips, head)
        logits = model(clips).logits
    assert expected.abs().max() > 0.1  # not trivially zero
    assert torch.allclose(logits, expected, atol=1e-5, rtol=1e-5), (logits - expected).abs().max()
    # two views, combined as DEAR's inference configs do (enn: 'score', the others: 'prob')
    views = torch.stack([clips, clips.flip(-1)], dim=1)
    how = "score" if head == "dear" else "prob"
    with torch.no_grad():
        per_view = torch.stack([_reference_logits(model, released, views[:, v], head) for v in range(2)], 1)
        pred = model.predict(views, average_clips=how)
    if how == "score":
        assert torch.allclose(pred.logits, per_view.mean(1), atol=1e-5, rtol=1e-5)
    else:
        assert torch.allclose(pred.logits.softmax(-1), per_view.softmax(-1).mean(1), atol=1e-6)


@pytest.mark.parametrize("head", HEADS)
@pytest.mark.parametrize("backbone", ["slowfast_tiny", "tpn_tiny"])
def test_export_writes_weights_the_released_heads_read_to_the_same_logits(tmp_path, backbone, head):
    from dear_ray.train.checkpointing import save_checkpoint

    trained = _build(backbone, head, seed=0)
    with torch.no_grad():
        for key, t in trained.state_dict().items():
            if t.is_floating_point() and "running_var" not in key and "_rho" not in key:
                t.copy_(torch.randn_like(t) * 0.5)
    folder = save_checkpoint(tmp_path / "checkpoint_epoch_0001", model=trained, epoch=1, global_step=5)
    out = export_weights(folder, tmp_path / "exported.pth")
    saved = torch.load(out, weights_only=True)
    state = saved["state_dict"]
    assert saved["meta"]["layout"] == "mmaction2"
    expected_keys = set(_released_state(trained))
    assert set(state) == expected_keys
    trained.eval()
    clips = torch.randn(2, 3, 8, 32, 32)
    with torch.no_grad():
        assert torch.allclose(trained(clips).logits, _reference_logits(trained, state, clips, head),
                              atol=1e-5, rtol=1e-5)
    again = _build(backbone, head, seed=3)
    report = load_checkpoint(again, out)
    assert report.unexpected == [] and report.missing == []
    for key, value in trained.state_dict().items():
        assert torch.equal(again.state_dict()[key], value), key
    dear_ray_layout = torch.load(export_weights(folder, tmp_path / "ours.pth", layout="dear_ray"),
                                 weights_only=True)["state_dict"]
    assert dear_ray_layout.keys() == trained.state_dict().keys()
    assert to_mmaction2_layout(dear_ray_layout).keys() == state.keys()
    with pytest.raises(ValueError, match="layout must be one of"):
        export_weights(folder, tmp_path / "x.pth", layout="mmaction")


def test_sdn_checkpoint_names_load_into_the_sdn_head(tmp_path):
    """vt-vl-lab/SDN models/resnet.py: one module with the backbone's keys at the top level, `fc`
    (actions), `place_mlp.<i>.{fc,bn}` + `place_mlp.p_last_fc` (scenes), `hm_mlp.*` (the human-mask
    adversarial head, `--is_mask_adv`), saved as DataParallel {'state_dict': ...}."""
    places, hidden = 3, 2
    model = build_recognizer(backbone="r3d18_tiny", head="sdn", num_classes=K, dropout=0.0,
                             head_options={"num_places": places, "num_place_hidden_layers": hidden})
    width = model.backbone.num_features
    state = {}
    for key, value in model.state_dict().items():
        tensor = torch.randn_like(value) if value.is_floating_point() else value.clone()
        if key.endswith("running_var"):
            tensor = tensor.abs() + 0.5
        if key.startswith("backbone."):
            state[key[len("backbone."):]] = tensor
        elif key.startswith("cls_head.fc_cls."):
            state["fc." + key[len("cls_head.fc_cls."):]] = tensor
        else:
            assert key.startswith("cls_head.place_mlp."), key
            state[key[len("cls_head."):]] = tensor
    assert {"fc.weight", "place_mlp.0.fc.weight", "place_mlp.1.bn.running_var",
            "place_mlp.p_last_fc.bias"} <= set(state)
    hm = {"hm_mlp.0.fc.weight": torch.randn(width, width), "hm_mlp.hm_last_fc.weight": torch.randn(K, width)}
    torch.save({"epoch": 3, "arch": "resnet-18",
                "state_dict": {f"module.{k}": v for k, v in {**state, **hm}.items()}}, tmp_path / "sdn.pth")
    report = load_checkpoint(model, tmp_path / "sdn.pth")
    assert report.unexpected == [] and report.missing == [] and report.skipped_classifier == []
    assert sorted(report.ignored) == sorted(f"module.{k}"[len("module."):] for k in hm)
    assert "ignored (2, SDN's human-mask adversarial head" in report.summary()
    model.eval()
    clips = torch.randn(2, 3, 8, 32, 32)
    with torch.no_grad():
        x = model.backbone.forward_features(clips).maps[0].mean(dim=(2, 3, 4))  # SDN's avgpool + view
        assert torch.allclose(model(clips).logits, x @ state["fc.weight"].t() + state["fc.bias"], atol=1e-5)
        h = x
        for i in range(hidden):  # MLP_Block: fc -> BatchNorm1d (eval) -> ReLU
            p = f"place_mlp.{i}."
            h = h @ state[p + "fc.weight"].t() + state[p + "fc.bias"]
            h = (h - state[p + "bn.running_mean"]) / torch.sqrt(state[p + "bn.running_var"] + 1e-5)
            h = torch.relu(h * state[p + "bn.weight"] + state[p + "bn.bias"])
        scene = h @ state["place_mlp.p_last_fc.weight"].t() + state["place_mlp.p_last_fc.bias"]
        assert torch.allclose(model.cls_head.scene_logits(x), scene, atol=1e-4)


@pytest.mark.parametrize("head", ["bnn", "rpl"])
def test_tpn_bnn_and_rpl_checkpoints_with_tsn_fc_cls_load_completely(tmp_path, head):
    """DEAR's TPNBNNHead / TPNRPLHead derive from MMAction2's TSNHead, whose constructor builds
    `fc_cls = Linear(in_channels, num_classes)`; their forward reads only `bnn_cls` (BNN) or
    `fc_centers` (RPL), so the released checkpoints carry an extra `cls_head.fc_cls.{weight,bias}`
    that no logit depends on. Such a checkpoint fits exactly (`complete=True`, as `dear-ray test`
    checks it) with those two keys listed as ignored, and gives the released head's logits."""
    from dear_ray.models.checkpoint import CheckpointError, check_checkpoint

    released = _released_state(_build("tpn_tiny", head, seed=0))
    width = next(v.shape[1] for k, v in released.items()
                 if k in ("cls_head.bnn_cls.bnn_layer.weight_mu", "cls_head.fc_centers.weight"))
    tsn_fc = {"cls_head.fc_cls.weight": torch.randn(K, width) * 5.0,
              "cls_head.fc_cls.bias": torch.randn(K) * 5.0}
    path = tmp_path / "tpn_zoo.pth"
    torch.save({"meta": {}, "state_dict": {f"module.{k}": v for k, v in {**released, **tsn_fc}.items()}},
               path)
    with torch.device("meta"):
        assert sorted(check_checkpoint(_build("tpn_tiny", head, seed=2), path, complete=True).ignored) \
            == sorted(tsn_fc)
    model = _build("tpn_tiny", head, seed=1)
    report = load_checkpoint(model, path, complete=True)
    assert report.unexpected == [] and report.missing == [] and sorted(report.ignored) == sorted(tsn_fc)
    assert "ignored (2, TSNHead's fc_cls, built but never read by DEAR's TPN BNN / RPL heads)" in str(report)
    model.eval()
    clips = torch.randn(2, 3, 8, 32, 32)
    with torch.no_grad():
        expected = _reference_logits(model, released, clips, head)
        logits = model(clips).logits
        pooled = model.backbone.forward_features(clips).maps[0].mean(dim=(2, 3, 4))
    assert torch.allclose(logits, expected, atol=1e-5, rtol=1e-5)
    unused = pooled @ tsn_fc["cls_head.fc_cls.weight"].t() + tsn_fc["cls_head.fc_cls.bias"]
    assert (logits - unused).abs().max() > 1.0  # the extra classifier is not what was loaded

    # the extra keys are only excused beside the layer the head uses instead
    lone = {k: v for k, v in released.items() if not k.startswith(("cls_head.bnn_cls.",
                                                                     "cls_head.fc_centers."))}
    torch.save({"state_dict": {**lone, **tsn_fc}}, tmp_path / "lone.pth")
    with pytest.raises(CheckpointError, match=r"unexpected in checkpoint \(2\): cls_head.fc_cls"):
        load_checkpoint(_build("tpn_tiny", head, seed=1), tmp_path / "lone.pth", complete=True)
    # and a softmax model reads fc_cls as its classifier: nothing is ignored
    softmax_state = _released_state(_build("tpn_tiny", "softmax", seed=0))
    torch.save({"state_dict": softmax_state}, tmp_path / "softmax.pth")
    assert load_checkpoint(_build("tpn_tiny", "softmax", seed=1), tmp_path / "softmax.pth",
                           complete=True).ignored == []
