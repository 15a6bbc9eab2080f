"""Published weights of the foundation backbones: where to get them, and how their keys map.

Nothing is downloaded at run time: `model.pretrained` names a file the user downloaded, and
`weights_hint(backbone)` says which (docs/backbones.md).

`rename_foreign_keys(state)` maps two published layouts onto dear_ray's names before
`dear_ray.models.checkpoint` matches keys (which adds or strips `backbone.` itself):

- MMAction2's Video Swin (`mmaction/models/backbones/swin.py`: `SwinTransformer3D`, both 1.x and
  the 0.x fork of SwinTransformer/Video-Swin-Transformer that StillMix starts from) to
  torchvision's `SwinTransformer3d` names, used by `swin3d_*`: stage i's blocks
  `layers.{i}.blocks.{j}.` -> `features.{2i}.{j}.`, its patch merging `layers.{i}.downsample.` ->
  `features.{2i+1}.` (both merge the same 2x2 neighbours in the same order, LayerNorm then a
  bias-free Linear), the MLP `mlp.fc1.` / `mlp.fc2.` -> `mlp.0.` / `mlp.3.` (torchvision's
  `MLP`: Linear, GELU, Dropout, Linear, Dropout), and 1.x's final `norm3.` -> `norm.` (0.x:
  `norm.`). Attention (`attn.qkv`, `attn.proj`, `attn.relative_position_bias_table`, the
  `relative_position_index` buffer, computed by the same formula), `norm1`, `norm2` and
  `patch_embed.proj` / `patch_embed.norm` keep their names; the recognizer's `cls_head.fc_cls`
  (MMAction2's I3DHead) is dear_ray's.
- torchvision's classifiers, stored at the top level of its files, to `cls_head.fc_cls.*`: Swin's
  `head.*`, MViT's `head.1.*`, S3D's `classifier.1.*` (a 1x1x1 conv, reshaped to a Linear's
  weight); VideoResNet's `fc.*` is mapped by the checkpoint loader itself. A Kinetics-400
  classifier then loads into a 400-class softmax head and is skipped for other class counts.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from torch import Tensor

# backbone -> the torchvision model whose weight enums it reads (get_model_weights)
TORCHVISION_MODELS = ("r3d_18", "mc3_18", "r2plus1d_18", "s3d", "mvit_v1_b", "mvit_v2_s",
                      "swin3d_t", "swin3d_s", "swin3d_b")
# MMAction2 1.x model zoo (configs/recognition/swin/metafile.yml), Kinetics-400
MMACTION2_SWIN = {
    "swin3d_t": "https://download.openmmlab.com/mmaction/v1.0/recognition/swin/swin-tiny-p244-w877"
                "_in1k-pre_8xb8-amp-32x2x1-30e_kinetics400-rgb/swin-tiny-p244-w877_in1k-pre_8xb8-"
                "amp-32x2x1-30e_kinetics400-rgb_20220930-241016b2.pth",
    "swin3d_s": "https://download.openmmlab.com/mmaction/v1.0/recognition/swin/swin-small-p244-"
                "w877_in1k-pre_8xb8-amp-32x2x1-30e_kinetics400-rgb/swin-small-p244-w877_in1k-pre_"
                "8xb8-amp-32x2x1-30e_kinetics400-rgb_20220930-e91ab986.pth",
    "swin3d_b": "https://download.openmmlab.com/mmaction/v1.0/recognition/swin/swin-base-p244-"
                "w877_in1k-pre_8xb8-amp-32x2x1-30e_kinetics400-rgb/swin-base-p244-w877_in1k-pre_"
                "8xb8-amp-32x2x1-30e_kinetics400-rgb_20220930-182ec6cc.pth",
}
HF_MODELS = {"videomae_b": "MCG-NJU/videomae-base (or -finetuned-kinetics)",
             "vjepa2_vitl": "facebook/vjepa2-vitl-fpc64-256"}

_SWIN_BLOCK = re.compile(r"^((?:backbone\.)?)layers\.(\d+)\.blocks\.(\d+)\.")
_SWIN_MERGE = re.compile(r"^((?:backbone\.)?)layers\.(\d+)\.downsample\.")
_TV_CLASSIFIER = {"head.weight": "cls_head.fc_cls.weight", "head.bias": "cls_head.fc_cls.bias",
                  "head.1.weight": "cls_head.fc_cls.weight", "head.1.bias": "cls_head.fc_cls.bias",
                  "classifier.1.weight": "cls_head.fc_cls.weight",
                  "classifier.1.bias": "cls_head.fc_cls.bias"}


def weights_hint(backbone: str) -> str:
    """Where the published weights of `backbone` come from (one sentence), or "" for a backbone
    without any (the tiny presets, the MMAction2 / DEAR backbones, whose files are in their
    model zoos)."""
    if backbone in HF_MODELS:
        return (f"{backbone} reads a local HuggingFace folder through backbone_options.hf_dir "
                f"(e.g. a snapshot of {HF_MODELS[backbone]}), not model.pretrained")
    if backbone not in TORCHVISION_MODELS:
        return ""
    from torchvision.models import get_model_weights

    enum = get_model_weights(backbone)
    files = "; ".join(f"{enum.__name__}.{w.name}: {w.url}" for w in enum)
    hint = f"{backbone} takes torchvision's weight file ({files})"
    if backbone in MMACTION2_SWIN:
        hint += f", or MMAction2's Video Swin checkpoint ({MMACTION2_SWIN[backbone]})"
    return hint + "; download it and set model.pretrained to the file"


def _rename_swin(key: str) -> str:
    if m := _SWIN_BLOCK.match(key):
        key = f"{m[1]}features.{2 * int(m[2])}.{m[3]}." + key[m.end():]
        return key.replace(".mlp.fc1.", ".mlp.0.").replace(".mlp.fc2.", ".mlp.3.")
    if m := _SWIN_MERGE.match(key):
        return f"{m[1]}features.{2 * int(m[2]) + 1}." + key[m.end():]
    for old in ("backbone.norm3.", "norm3."):
        if key.startswith(old):
            return key.replace("norm3.", "norm.", 1)
    return key


def rename_foreign_keys(state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """`state` with MMAction2 Video Swin and torchvision classifier keys renamed (see the module
    docstring); any other key, and any other layout, unchanged."""
    swin = any(_SWIN_BLOCK.match(k) for k in state)
    out: dict[str, Tensor] = {}
    for key, value in state.items():
        if swin:
            key = _rename_swin(key)
        if key in _TV_CLASSIFIER:
            if key == "classifier.1.weight" and value.dim() == 5:
                value = value.flatten(1)  # S3D's 1x1x1 conv: (K, C, 1, 1, 1) -> (K, C)
            key = _TV_CLASSIFIER[key]
        out[key] = value
    return out


__all__ = ["HF_MODELS", "MMACTION2_SWIN", "TORCHVISION_MODELS", "rename_foreign_keys",
           "weights_hint"]
