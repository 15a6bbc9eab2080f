"""torchvision's video models and transformers' VideoMAE / V-JEPA 2 as backbones: torchvision's
names and numbers, the published weight layouts (torchvision, MMAction2's Video Swin), the local
HuggingFace folders."""

import re

import pytest
import torch
from torch import nn
from torchvision.models import get_model_weights
from torchvision.models import video as tv
from torchvision.models.video.mvit import MSBlockConfig, MViT

from dear_ray.config import load_config
from dear_ray.models import build_recognizer, create_backbone
from dear_ray.models.backbones.weights import rename_foreign_keys, weights_hint
from dear_ray.models.checkpoint import load_checkpoint
from dear_ray.train.pretrained import check_pretrained
from tests.models._backbones import NEEDS_TRANSFORMERS

TORCHVISION = ["r3d_18", "mc3_18", "r2plus1d_18", "s3d", "mvit_v1_b", "mvit_v2_s", "swin3d_t",
               "swin3d_s", "swin3d_b"]
CLASSIFIER = ("fc.", "head.", "classifier.")

pytestmark = pytest.mark.usefixtures("seed_and_one_thread")


@pytest.mark.parametrize("name", TORCHVISION)
def test_keys_shapes_and_size_are_torchvisions(name):
    with torch.device("meta"):  # structure only
        ours, theirs = create_backbone(name), getattr(tv, name)()
    want = {k: v.shape for k, v in theirs.state_dict().items() if not k.startswith(CLASSIFIER)}
    assert {k: v.shape for k, v in ours.state_dict().items()} == want
    weights = get_model_weights(name).DEFAULT
    with_classifier = sum(p.numel() for p in ours.parameters()) + ours.num_features * 400 + 400
    assert with_classifier == weights.meta["num_params"]  # torchvision's published count
    assert ours.num_features == ours.debias_channels and ours.aux_channels == 0


def _save(state, tmp_path, name="weights.pth"):
    path = tmp_path / name
    torch.save(state, path)
    return path


def test_torchvision_video_resnet_file_gives_torchvisions_logits(tmp_path):
    theirs = tv.VideoResNet(tv.resnet.BasicBlock, [tv.resnet.Conv2Plus1D] * 4, [1, 1, 1, 1],
                            tv.resnet.R2Plus1dStem, num_classes=5).eval()
    model = build_recognizer(backbone="r2plus1d_18", head="softmax", num_classes=5, dropout=0.0,
                             backbone_options={"layers": (1, 1, 1, 1)}).eval()
    report = load_checkpoint(model, _save(theirs.state_dict(), tmp_path), complete=True)
    assert "cls_head.fc_cls.weight" in report.loaded  # torchvision's `fc.` is the classifier
    x = torch.randn(2, 3, 8, 32, 32)
    with torch.no_grad():
        assert torch.allclose(model(x).logits, theirs(x), atol=1e-5)


def test_torchvision_swin_file_gives_torchvisions_logits(tmp_path):
    theirs = tv.SwinTransformer3d(patch_size=[2, 4, 4], embed_dim=16, depths=[1, 1, 1, 1],
                                  num_heads=[1, 2, 2, 4], window_size=[2, 4, 4], num_classes=5).eval()
    model = build_recognizer(backbone="swin3d_tiny", head="softmax", num_classes=5, dropout=0.0).eval()
    load_checkpoint(model, _save(theirs.state_dict(), tmp_path), complete=True)
    x = torch.randn(2, 3, 8, 32, 32)
    with torch.no_grad():
        assert torch.allclose(model(x).logits, theirs(x), atol=1e-5)


def test_mvit_maps_are_torchvisions_final_patch_tokens():
    blocks = [MSBlockConfig(1, 16, 16, [3, 3, 3], [3, 3, 3], [1, 1, 1], [1, 2, 2]),
              MSBlockConfig(2, 16, 32, [3, 3, 3], [3, 3, 3], [1, 2, 2], [1, 1, 1])]
    theirs = MViT(spatial_size=(32, 32), temporal_size=8, block_setting=blocks, residual_pool=True,
                  residual_with_cls_embed=False, rel_pos_embed=True, proj_after_attn=True,
                  num_classes=5).eval()
    ours = create_backbone("mvit_v2_tiny").eval()
    ours.load_state_dict({k: v for k, v in theirs.state_dict().items() if not k.startswith("head")})
    seen = {}
    theirs.norm.register_forward_hook(lambda _m, _i, out: seen.update(tokens=out))
    x = torch.randn(2, 3, 8, 32, 32)
    with torch.no_grad():
        theirs(x)
        maps = ours.forward_features(x).maps[0]
    assert maps.shape == (2, 32, 4, 4, 4)
    tokens = seen["tokens"][:, 1:]  # class token dropped; patch tokens in (t, h, w) order
    assert torch.equal(maps[:, :, 1, 2, 3], tokens[:, 1 * 16 + 2 * 4 + 3])
    with pytest.raises(ValueError, match=r"built for clips of 8 frames at 32x32"):
        ours.forward_features(torch.randn(1, 3, 16, 32, 32))


def test_s3d_classifier_conv_becomes_the_linear_classifier():
    weight, bias = torch.randn(400, 1024, 1, 1, 1), torch.randn(400)
    out = rename_foreign_keys({"classifier.1.weight": weight, "classifier.1.bias": bias,
                               "features.0.0.0.weight": torch.zeros(1)})
    assert torch.equal(out["cls_head.fc_cls.weight"], weight.view(400, 1024))
    assert torch.equal(out["cls_head.fc_cls.bias"], bias) and "features.0.0.0.weight" in out


def _mmaction2_swin_layout(state, *, final_norm):
    """Our swin3d_tiny recognizer keys written as MMAction2's SwinTransformer3D + I3DHead names
    (mmaction/models/backbones/swin.py): layers.i.blocks.j / layers.i.downsample, Mlp fc1 / fc2,
    final norm `norm3` (1.x) or `norm` (0.x)."""
    out = {}
    for key, value in state.items():
        if m := re.match(r"backbone\.features\.(\d+)\.(.*)", key):
            stage, rest = int(m[1]), m[2]
            if stage % 2 == 0:
                block, rest = rest.split(".", 1)
                rest = rest.replace("mlp.0.", "mlp.fc1.").replace("mlp.3.", "mlp.fc2.")
                key = f"backbone.layers.{stage // 2}.blocks.{block}.{rest}"
            else:
                key = f"backbone.layers.{stage // 2}.downsample.{rest}"
        elif key.startswith("backbone.norm."):
            key = key.replace("backbone.norm.", f"backbone.{final_norm}.")
        out[key] = value
    return out


@pytest.mark.parametrize("final_norm", ["norm3", "norm"])  # MMAction2 1.x, Video-Swin (0.x fork)
def test_mmaction2_video_swin_checkpoint_loads_every_tensor(tmp_path, final_norm):
    source = build_recognizer(backbone="swin3d_tiny", head="softmax", num_classes=5)
    state = _mmaction2_swin_layout(source.state_dict(), final_norm=final_norm)
    assert "backbone.layers.0.blocks.0.mlp.fc1.weight" in state
    assert "backbone.layers.2.downsample.reduction.weight" in state
    target = build_recognizer(backbone="swin3d_tiny", head="softmax", num_classes=5)
    report = load_checkpoint(target, _save({"state_dict": state}, tmp_path), complete=True)
    assert not report.missing and not report.unexpected
    for key, value in source.state_dict().items():
        assert torch.equal(target.state_dict()[key], value), key


def test_missing_weight_file_names_where_to_get_it(tmp_path):
    hint = weights_hint("swin3d_t")
    assert "Swin3D_T_Weights.KINETICS400_V1: https://download.pytorch.org/models/swin3d_t-" in hint
    assert "download.openmmlab.com" in hint
    assert "S3D_Weights.KINETICS400_V1" in weights_hint("s3d") and weights_hint("i3d_tiny") == ""
    cfg = load_config({"data": {"num_classes": 4},
                       "model": {"backbone": "swin3d_tiny", "pretrained": str(tmp_path / "x.pth")}})
    with pytest.raises(FileNotFoundError, match="x.pth"):
        check_pretrained(cfg)
    cfg = cfg.override({"model.backbone": "r3d_18"})
    with pytest.raises(FileNotFoundError, match=r"R3D_18_Weights\.KINETICS400_V1: https://"):
        check_pretrained(cfg)


def test_unknown_option_is_named():
    with pytest.raises(TypeError, match=r"'swin3d_t' got unknown option\(s\) \['depth'\]"):
        create_backbone("swin3d_t", depth=3)
    with pytest.raises(ValueError, match="unknown conv_makers"):
        create_backbone("r3d_18_tiny", conv_makers=("4d",) * 4)


# ---- HuggingFace transformers --------------------------------------------------------------



@NEEDS_TRANSFORMERS
@pytest.mark.parametrize("name", ["videomae_tiny", "vjepa2_tiny"])
def test_hf_tokens_become_maps_in_t_h_w_order(name):
    model = create_backbone(name).eval()
    x = torch.randn(2, 3, 8, 32, 32)
    with torch.no_grad():
        maps = model.forward_features(x).maps[0]
        tokens = model.tokens(x.transpose(1, 2))
    assert maps.shape == (2, 32, 4, 4, 4) and tokens.shape == (2, 64, 32)
    assert torch.equal(maps[:, :, 2, 1, 3], tokens[:, 2 * 16 + 1 * 4 + 3])


@NEEDS_TRANSFORMERS
def test_videomae_loads_a_local_folder_and_checks_its_size(tmp_path):
    import transformers

    source = create_backbone("videomae_tiny")
    source.videomae.save_pretrained(tmp_path / "mae")
    loaded = create_backbone("videomae_tiny", hf_dir=str(tmp_path / "mae"))
    for key, value in source.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key
    with torch.device("meta"):  # the pre-training checks read config.json only
        assert create_backbone("videomae_tiny", hf_dir=str(tmp_path / "mae")).num_features == 32
    with pytest.raises(ValueError, match=r"another model size: hidden_size 32 \(preset 768\)"):
        create_backbone("videomae_b", hf_dir=str(tmp_path / "mae"))
    with pytest.raises(FileNotFoundError, match="has no config.json"):
        create_backbone("videomae_tiny", hf_dir=str(tmp_path))
    with pytest.raises(ValueError, match=r"configured for clips of 8 frames at 32x32"):
        loaded.forward_features(torch.randn(1, 3, 16, 32, 32))
    assert isinstance(loaded.videomae, transformers.VideoMAEModel)


@NEEDS_TRANSFORMERS
def test_vjepa2_keeps_the_encoder_only(tmp_path):
    import transformers

    full = transformers.VJEPA2Model(create_backbone("vjepa2_tiny").encoder.config)
    full.save_pretrained(tmp_path / "vj")
    loaded = create_backbone("vjepa2_tiny", hf_dir=str(tmp_path / "vj"))
    assert not any(k.startswith("predictor") for k in loaded.state_dict())
    for key, value in full.encoder.state_dict().items():
        assert torch.equal(loaded.encoder.state_dict()[key], value), key
    with torch.no_grad():  # RoPE: other clip lengths work
        assert loaded.forward_features(torch.randn(1, 3, 4, 32, 32)).maps[0].shape == (1, 32, 2, 4, 4)


def test_without_transformers_the_error_says_what_to_install(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "transformers", None)
    with pytest.raises(ImportError, match=r"pip install 'dear-ray\[hf\]'"):
        create_backbone("videomae_tiny")


def test_frozen_backbone_is_eval_and_outside_the_optimiser():
    from dear_ray.train.optim import build_optimizer

    cfg = load_config({"model": {"backbone": "r3d_18_tiny", "head": "edl", "freeze_backbone": True}})
    model = build_recognizer(num_classes=4, **cfg.model.recognizer_options())
    model.train()
    assert not model.backbone.training and model.cls_head.training
    optimised = {id(p) for g in build_optimizer(model, cfg.optim).param_groups for p in g["params"]}
    assert optimised == {id(p) for p in model.cls_head.parameters()}
    bn = next(m for m in model.backbone.modules() if isinstance(m, nn.BatchNorm3d))
    running, before = bn.running_mean.clone(), [p.clone() for p in model.backbone.parameters()]
    loss, _ = model.training_loss(torch.randn(4, 3, 8, 32, 32), torch.tensor([0, 1, 2, 3]),
                                  anneal=0.5, iteration=0)
    loss.backward()
    assert all(p.grad is None for p in model.backbone.parameters())
    assert torch.equal(bn.running_mean, running)  # eval mode: the statistics do not move
    assert all(torch.equal(a, b) for a, b in zip(before, model.backbone.parameters(), strict=True))
    assert model.cls_head.fc_cls.weight.grad is not None
