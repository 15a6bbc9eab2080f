"""The backbone input pipelines against the preprocessing their models were published with."""

import re
from pathlib import Path

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


def test_data_preset_fills_the_pipeline_the_config_does_not_set():
    from dear_ray.config import load_config

    cfg = load_config({"data": {"preset": "videomae_b", "clip_len": 8}})
    want = BACKBONE_PIPELINES["videomae_b"]
    assert (cfg.data.frame_interval, cfg.data.scale_short, cfg.data.crop_size) == (4, 224, 224)
    assert cfg.data.mean == want.mean and cfg.data.std == want.std
    assert cfg.data.resize == "antialias" and cfg.data.sampler == "sample_frames"
    assert cfg.data.clip_len == 8  # the config's own value wins
    saved = cfg.to_dict()["data"]  # a saved config holds every value (MLflow params, files)
    assert saved["preset"] == "videomae_b" and saved["crop_size"] == 224 and saved["clip_len"] == 8
    assert load_config(cfg.to_dict()) == cfg
    # the base that overrides build on leaves the preset's values out for a new preset to fill
    sparse = cfg.to_dict(sparse=True)["data"]
    assert "crop_size" not in sparse and sparse["clip_len"] == 8
    assert "crop_size" in load_config({}).to_dict()["data"]  # defaults are saved too
    swapped = cfg.override({"data.preset": "swin3d_t_mmaction2"})
    assert (swapped.data.frame_interval, swapped.data.resize) == (2, "cv2")
    assert swapped.data.test_scale_short == 224 and swapped.data.clip_len == 8


def test_an_unknown_preset_names_the_known_ones():
    from dear_ray.config import ConfigError, load_config

    with pytest.raises(ConfigError) as err:
        load_config({"data": {"preset": "swin"}})
    message = str(err.value)
    assert "data.preset" in message and "'swin'" in message
    assert all(name in message for name in BACKBONE_PIPELINES)


def test_the_foundation_sweep_takes_each_backbone_pipeline_by_name():
    from dear_ray.tune.sweep import expand_trials, load_sweep

    sweep = Path(__file__).resolve().parents[2] / "jobs" / "sweeps" / "foundation_ucf101.yaml"
    for trial in expand_trials(load_sweep(sweep)):
        backbone, data = trial.config.model.backbone, trial.config.data
        assert data.preset == backbone
        want = BACKBONE_PIPELINES[backbone]
        assert (data.clip_len, data.frame_interval, data.scale_short, data.crop_size,
                data.mean, data.std, data.resize) == (
            want.clip_len, want.frame_interval, want.scale_short, want.crop_size, want.mean,
            want.std, want.resize), trial.name
