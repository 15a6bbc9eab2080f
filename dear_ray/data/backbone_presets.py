"""The input pipeline each foundation backbone was trained with, as named presets of `data.*`.

`BACKBONE_PIPELINES[name]` is an `InputPipeline`: frames a clip and the frame interval, the short
side the frames are resized to, the crop, and the RGB mean / std (0-255 scale); `.overrides()`
gives the dotted `data.*` values a config or a sweep case sets for it (`sampler: sample_frames`,
the sizes for training and test views, and the resize: `cv2`, bilinear without antialiasing, as
torchvision's `VideoClassification` (`antialias=False`) and MMAction2; `antialias` as transformers'
image processors). `apply_pipeline(raw,
name)` merges them into a raw config mapping, leaving the values it already sets.

Sources (docs/backbones.md; tests/data/test_backbone_presets.py checks them against the
published preprocessing where the libraries carry it):
- torchvision: the weights' `transforms()` (`VideoClassification`: resize, crop, mean, std) and
  their `_docs` (clip length and frame rate of the evaluation: 15 fps is every 2nd frame of
  Kinetics' ~30 fps, 7.5 fps every 4th). R3D / MC3 / R(2+1)D resize to 128 x 171, a 4:3 frame's
  short side 128; S3D to 256 x 256 (the aspect ratio changes), here the short side to 256. S3D's
  evaluation clip is 128 frames; the preset takes 64, its training length (torchvision's
  references/video_classification README), to fit a GPU.
- MMAction2's Video Swin (configs/recognition/swin): 32 x 2 frames, short side 256 (training),
  224 crops; its test views are 3 crops at short side 224 (`test_scale_short: 224`).
- VideoMAE (MMAction2 configs/recognition/videomae, the VideoMAE repo's fine-tuning): 16 x 4
  frames, short side 224, crop 224, ImageNet mean / std; transformers' `VideoMAEImageProcessor`
  has the same sizes (its class default mean / std are 0.5: the published checkpoints' processor
  files set ImageNet's).
- V-JEPA 2 (facebookresearch/vjepa2 configs/eval/vitl/k400.yaml: 16 frames every 4th, 256
  pixels; transformers' `VJEPA2VideoProcessor`: short side 256 * 256 / 224 = 292, crop 256,
  ImageNet mean / std).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

IMAGENET_MEAN = (123.675, 116.28, 103.53)  # (0.485, 0.456, 0.406) x 255
IMAGENET_STD = (58.395, 57.12, 57.375)  # (0.229, 0.224, 0.225) x 255
KINETICS_MEAN = (114.75, 114.75, 114.75)  # pytorchvideo's (0.45,) x 255 (MViT)
KINETICS_STD = (57.375, 57.375, 57.375)  # (0.225,) x 255
TV_RESNET_MEAN = (110.2008, 100.63983, 95.99475)  # torchvision's (0.43216, 0.394666, 0.37645) x 255
TV_RESNET_STD = (58.14765, 56.46975, 55.33219)  # (0.22803, 0.22145, 0.216989) x 255


@dataclass(frozen=True)
class InputPipeline:
    """One backbone's input.

    Attributes:
        backbone: the registered backbone it belongs to.
        clip_len: frames a clip.
        frame_interval: every n-th decoded frame.
        scale_short: short side of the resized frames (training and test).
        crop_size: square crop.
        mean: RGB mean, 0-255 scale.
        std: RGB std, 0-255 scale.
        resize: `cv2` (bilinear, no antialiasing: torchvision, MMAction2) or `antialias`
            (transformers).
        test_scale_short: the test views' short side, when it differs.
        source: where the numbers come from.
    """

    backbone: str
    clip_len: int
    frame_interval: int
    scale_short: int
    crop_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    resize: str
    source: str
    test_scale_short: int | None = None

    def overrides(self) -> dict[str, Any]:
        """The dotted `data.*` values of this pipeline."""
        out = {"data.sampler": "sample_frames", "data.clip_len": self.clip_len,
               "data.frame_interval": self.frame_interval, "data.scale_short": self.scale_short,
               "data.crop_size": self.crop_size, "data.mean": list(self.mean),
               "data.std": list(self.std), "data.resize": self.resize}
        if self.test_scale_short is not None:
            out["data.test_scale_short"] = self.test_scale_short
        return out


def _tv(backbone: str, clip_len: int, interval: int, short: int, crop: int, mean, std,
        weights: str) -> InputPipeline:
    return InputPipeline(backbone, clip_len, interval, short, crop, mean, std, "cv2",
                         f"torchvision {weights}.transforms() and meta")


BACKBONE_PIPELINES: dict[str, InputPipeline] = {
    "r3d_18": _tv("r3d_18", 16, 2, 128, 112, TV_RESNET_MEAN, TV_RESNET_STD,
                  "R3D_18_Weights.KINETICS400_V1"),
    "mc3_18": _tv("mc3_18", 16, 2, 128, 112, TV_RESNET_MEAN, TV_RESNET_STD,
                  "MC3_18_Weights.KINETICS400_V1"),
    "r2plus1d_18": _tv("r2plus1d_18", 16, 2, 128, 112, TV_RESNET_MEAN, TV_RESNET_STD,
                       "R2Plus1D_18_Weights.KINETICS400_V1"),
    "s3d": _tv("s3d", 64, 2, 256, 224, TV_RESNET_MEAN, TV_RESNET_STD, "S3D_Weights.KINETICS400_V1"),
    "mvit_v1_b": _tv("mvit_v1_b", 16, 4, 256, 224, KINETICS_MEAN, KINETICS_STD,
                     "MViT_V1_B_Weights.KINETICS400_V1"),
    "mvit_v2_s": _tv("mvit_v2_s", 16, 4, 256, 224, KINETICS_MEAN, KINETICS_STD,
                     "MViT_V2_S_Weights.KINETICS400_V1"),
    "swin3d_t": _tv("swin3d_t", 32, 2, 256, 224, IMAGENET_MEAN, IMAGENET_STD,
                    "Swin3D_T_Weights.KINETICS400_V1"),
    "swin3d_s": _tv("swin3d_s", 32, 2, 256, 224, IMAGENET_MEAN, IMAGENET_STD,
                    "Swin3D_S_Weights.KINETICS400_V1"),
    "swin3d_b": _tv("swin3d_b", 32, 2, 256, 224, IMAGENET_MEAN, IMAGENET_STD,
                    "Swin3D_B_Weights.KINETICS400_V1"),
    "swin3d_t_mmaction2": InputPipeline(
        "swin3d_t", 32, 2, 256, 224, IMAGENET_MEAN, IMAGENET_STD, "cv2",
        "MMAction2 configs/recognition/swin/swin-tiny-p244-w877_in1k-pre_8xb8-amp-32x2x1-30e_"
        "kinetics400-rgb.py", test_scale_short=224),
    "videomae_b": InputPipeline(
        "videomae_b", 16, 4, 224, 224, IMAGENET_MEAN, IMAGENET_STD, "antialias",
        "MMAction2 configs/recognition/videomae/vit-base-p16_videomae-k400-pre_16x4x1_kinetics-"
        "400.py; transformers VideoMAEImageProcessor sizes"),
    "vjepa2_vitl": InputPipeline(
        "vjepa2_vitl", 16, 4, 292, 256, IMAGENET_MEAN, IMAGENET_STD, "antialias",
        "facebookresearch/vjepa2 configs/eval/vitl/k400.yaml; transformers VJEPA2VideoProcessor"),
}


def pipeline_overrides(name: str) -> dict[str, Any]:
    """The dotted `data.*` overrides of preset `name`.

    Raises:
        KeyError: an unknown name; the message lists the known ones.
    """
    if name not in BACKBONE_PIPELINES:
        raise KeyError(f"unknown backbone pipeline {name!r}; known: "
                       f"{', '.join(sorted(BACKBONE_PIPELINES))}")
    return BACKBONE_PIPELINES[name].overrides()


def apply_pipeline(raw: Mapping[str, Any], name: str) -> dict[str, Any]:
    """A copy of the raw config mapping `raw` with preset `name`'s `data.*` values added where
    `raw` does not set them (the config's own values win)."""
    out = copy.deepcopy(dict(raw))
    data = out.setdefault("data", {})
    for dotted, value in pipeline_overrides(name).items():
        data.setdefault(dotted.split(".", 1)[1], value)
    return out


__all__ = ["BACKBONE_PIPELINES", "InputPipeline", "apply_pipeline", "pipeline_overrides"]
