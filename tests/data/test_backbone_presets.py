"""The backbone input pipelines against the preprocessing their models were published with."""

import re

import pytest
from torchvision.models import get_model_weights

from dear_ray.config import load_config
from dear_ray.data.backbone_presets import BACKBONE_PIPELINES, apply_pipeline, pipeline_overrides
from dear_ray.models import list_backbones
from tests.models._backbones import NEEDS_TRANSFORMERS

TORCHVISION = ["r3d_18", "mc3_18", "r2plus1d_18", "s3d", "mvit_v1_b", "mvit_v2_s", "swin3d_t",
               "swin3d_s", "swin3d_b"]
KINETICS_FPS = 30  # torchvision's frame_rate is the resampled rate of ~30 fps Kinetics videos


@pytest.mark.parametrize("name", TORCHVISION)
def test_torchvision_presets_are_the_weights_transforms(name):
    weights = get_model_weights(name).DEFAULT
    t = weights.transforms()
    p = BACKBONE_PIPELINES[name]
    assert [p.crop_size, p.crop_size] == t.crop_size
    resize = t.resize_size
    assert p.scale_short == min(resize)  # (128, 171): a 4:3 frame's short side; (256,): short side
    assert p.mean == pytest.approx([255 * m for m in t.mean])
    assert p.std == pytest.approx([255 * s for s in t.std])
    docs = weights.meta["_docs"]
    clip_len = int(re.search(r"clip_len=(\d+)", docs)[1])
    fps = float(re.search(r"frame_rate=([\d.]+)", docs)[1])
    assert p.frame_interval == round(KINETICS_FPS / fps)
    assert p.clip_len == (64 if name == "s3d" else clip_len)  # S3D evaluates 128, trains 64
    assert p.resize == "cv2" and p.backbone == name


@NEEDS_TRANSFORMERS
def test_videomae_and_vjepa2_presets_are_the_processors():
    import transformers
    from transformers.image_utils import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD

    mae, proc = BACKBONE_PIPELINES["videomae_b"], transformers.VideoMAEImageProcessor()
    assert mae.scale_short == proc.size["shortest_edge"] and mae.crop_size == proc.crop_size["height"]
    assert mae.clip_len == transformers.VideoMAEConfig().num_frames
    for p in (mae, BACKBONE_PIPELINES["vjepa2_vitl"]):
        assert p.mean == pytest.approx([255 * m for m in IMAGENET_DEFAULT_MEAN])
        assert p.std == pytest.approx([255 * s for s in IMAGENET_DEFAULT_STD])
    vj = transformers.VJEPA2VideoProcessor()
    assert BACKBONE_PIPELINES["vjepa2_vitl"].scale_short == vj.size["shortest_edge"] == 292
    assert BACKBONE_PIPELINES["vjepa2_vitl"].crop_size == transformers.VJEPA2Config().crop_size


def test_every_pipeline_names_a_backbone_and_validates():
    backbones = set(list_backbones())
    for name, p in BACKBONE_PIPELINES.items():
        assert p.backbone in backbones, name
        raw = apply_pipeline({"model": {"backbone": p.backbone}}, name)
        cfg = load_config(raw)
        assert cfg.data.clip_len == p.clip_len and cfg.data.crop_size == p.crop_size
        assert cfg.data.mean == p.mean and cfg.data.resize == p.resize
    kept = apply_pipeline({"data": {"clip_len": 8}}, "swin3d_t")  # the config's own value wins
    assert kept["data"]["clip_len"] == 8 and kept["data"]["crop_size"] == 224
    assert pipeline_overrides("swin3d_t_mmaction2")["data.test_scale_short"] == 224
    with pytest.raises(KeyError, match="unknown backbone pipeline 'swin'.*swin3d_t"):
        pipeline_overrides("swin")
