"""HuggingFace transformers' video ViTs as backbones: VideoMAE (Tong et al., NeurIPS 2022;
`VideoMAEModel`) and V-JEPA 2's encoder (Assran et al., 2025; `VJEPA2Model`), from a local folder.

transformers is an optional dependency (`pip install 'dear-ray[hf]'`); it is imported when one of
these backbones is built. Nothing is downloaded: `backbone_options: {hf_dir: FOLDER}` names a
folder holding a model's `config.json` and weights (a `save_pretrained` folder, or a hub snapshot
downloaded by the user), read with `from_pretrained(FOLDER, local_files_only=True)`; without it
the preset's configuration is built with random weights. On the meta device (the pre-training
checks) only the folder's `config.json` is read.

Maps: the encoder's last hidden states `(B, N, C)` (after its final LayerNorm, where the
configuration has one: VideoMAE with `use_mean_pooling: false`, V-JEPA 2 always), N = T/t * H/p *
W/p tokens of t x p x p tubelets in (t, h, w) order, reshaped to `(B, C, T/t, H/p, W/p)`.
VideoMAE's fine-tuned classifiers apply `fc_norm` to the mean token; that norm belongs to
`VideoMAEForVideoClassification`, not to the encoder, and is not part of this backbone.
VideoMAE's sinusoidal position table fixes the input size (its config's `num_frames` and
`image_size`); V-JEPA 2 (3D RoPE) takes any size that is a multiple of its tubelet and patch.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ._registry import register_backbone
from .output import HEAD_INIT_STD, BackboneOutput

INSTALL_HINT = "pip install 'dear-ray[hf]' (HuggingFace transformers)"
# what a preset fixes: a folder whose config differs here is another model size
CHECKED_FIELDS = ("hidden_size", "num_hidden_layers", "num_attention_heads", "patch_size",
                  "tubelet_size")


def _transformers(backbone: str) -> Any:
    try:
        import transformers
    except ImportError as err:
        raise ImportError(f"backbone {backbone!r} needs HuggingFace transformers, which is not "
                          f"installed: {INSTALL_HINT}") from err
    return transformers


def _on_meta() -> bool:
    return torch.empty(0).device.type == "meta"


def _from_folder(backbone: str, model_cls: Any, config_cls: Any, hf_dir: str,
                 preset: dict[str, Any]) -> nn.Module:
    """`model_cls.from_pretrained(hf_dir)` (config only on the meta device), checking that the
    folder holds the preset's model size."""
    folder = Path(hf_dir).expanduser()
    if not (folder / "config.json").is_file():
        raise FileNotFoundError(f"backbone {backbone!r}: backbone_options.hf_dir {folder} has no "
                                "config.json (expected a folder written by save_pretrained, or a "
                                "downloaded hub snapshot of the model)")
    config = config_cls.from_pretrained(folder, local_files_only=True)
    wrong = {k: (getattr(config, k), v) for k, v in preset.items()
             if k in CHECKED_FIELDS and getattr(config, k) != v}
    if wrong:
        found = ", ".join(f"{k} {got} (preset {want})" for k, (got, want) in wrong.items())
        raise ValueError(f"backbone {backbone!r}: {folder}/config.json is another model size: "
                         f"{found}; choose the backbone preset of that size")
    if _on_meta():
        return model_cls(config)
    return model_cls.from_pretrained(folder, local_files_only=True)


class TokenMapBackbone(nn.Module):
    """A transformers video encoder whose tokens are reshaped to one 5-D map.

    Subclasses name the encoder attribute (its state-dict prefix) and run it in `tokens`.
    """

    def __init__(self, *, hidden_size: int, tubelet: int, patch: int,
                 input_size: tuple[int, int, int] | None) -> None:
        super().__init__()
        self.num_features = self.debias_channels = hidden_size
        self.aux_channels = 0
        self.segmental = False
        self.head_init_std = HEAD_INIT_STD
        self.tubelet, self.patch = tubelet, patch
        self.input_size = input_size  # (T, H, W) the encoder needs, None: any multiple

    def tokens(self, x: Tensor) -> Tensor:
        """(B, T, 3, H, W) pixel values -> (B, N, C) last hidden states."""
        raise NotImplementedError

    def forward_features(self, x: Tensor) -> BackboneOutput:
        b, _, t, h, w = x.shape
        if self.input_size is not None and (t, h, w) != self.input_size:
            raise ValueError(f"{type(self).__name__} was configured for clips of {self.input_size[0]} "
                             f"frames at {self.input_size[1]}x{self.input_size[2]} (num_frames, "
                             f"image_size of its config), got clips {tuple(x.shape)}")
        if t % self.tubelet or h % self.patch or w % self.patch:
            raise ValueError(f"{type(self).__name__}: clips {tuple(x.shape)} must have T a "
                             f"multiple of {self.tubelet} and H, W multiples of {self.patch}")
        tokens = self.tokens(x.transpose(1, 2))
        grid = (t // self.tubelet, h // self.patch, w // self.patch)
        maps = tokens.transpose(1, 2).reshape(b, -1, *grid)
        return BackboneOutput(maps=(maps,), debias_map=maps, aux_map=None)

    def forward(self, x: Tensor) -> BackboneOutput:
        return self.forward_features(x)


class VideoMAEBackbone(TokenMapBackbone):
    """`VideoMAEModel` as `videomae` (keys `videomae.embeddings.*`, `videomae.encoder.*`)."""

    def __init__(self, model: nn.Module) -> None:
        c = model.config
        super().__init__(hidden_size=c.hidden_size, tubelet=c.tubelet_size, patch=c.patch_size,
                         input_size=(c.num_frames, c.image_size, c.image_size))
        self.videomae = model

    def tokens(self, x: Tensor) -> Tensor:
        return self.videomae(pixel_values=x).last_hidden_state


class VJEPA2Backbone(TokenMapBackbone):
    """V-JEPA 2's encoder (`VJEPA2Model.encoder`, keys `encoder.*`); its predictor is dropped."""

    def __init__(self, model: nn.Module) -> None:
        c = model.config
        super().__init__(hidden_size=c.hidden_size, tubelet=c.tubelet_size, patch=c.patch_size,
                         input_size=None)
        self.encoder = model.encoder

    def tokens(self, x: Tensor) -> Tensor:
        return self.encoder(pixel_values_videos=x).last_hidden_state


def build_videomae(backbone: str, preset: dict[str, Any], hf_dir: str | None) -> VideoMAEBackbone:
    tf = _transformers(backbone)
    if hf_dir is not None:
        return VideoMAEBackbone(_from_folder(backbone, tf.VideoMAEModel, tf.VideoMAEConfig,
                                             hf_dir, preset))
    return VideoMAEBackbone(tf.VideoMAEModel(tf.VideoMAEConfig(**preset)))


def build_vjepa2(backbone: str, preset: dict[str, Any], hf_dir: str | None) -> VJEPA2Backbone:
    tf = _transformers(backbone)
    if not hasattr(tf, "VJEPA2Model"):
        raise ImportError(f"backbone {backbone!r} needs transformers >= 4.53 (VJEPA2Model); "
                          f"installed: {tf.__version__}")
    if hf_dir is not None:
        return VJEPA2Backbone(_from_folder(backbone, tf.VJEPA2Model, tf.VJEPA2Config, hf_dir,
                                           preset))
    return VJEPA2Backbone(tf.VJEPA2Model(tf.VJEPA2Config(**preset)))


# VideoMAEConfig's defaults are ViT-B/16, 16 frames, tubelet 2, 224 (MCG-NJU/videomae-base*)
VIDEOMAE_B = dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                  intermediate_size=3072, patch_size=16, tubelet_size=2, num_frames=16,
                  image_size=224)
VIDEOMAE_TINY = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=64, patch_size=8, tubelet_size=2, num_frames=8,
                     image_size=32)
# VJEPA2Config's defaults are ViT-L/16 at 256 (facebook/vjepa2-vitl-fpc64-256)
VJEPA2_L = dict(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, patch_size=16,
                tubelet_size=2, crop_size=256, frames_per_clip=64)
VJEPA2_TINY = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, patch_size=8,
                   tubelet_size=2, crop_size=32, frames_per_clip=8, pred_hidden_size=16,
                   pred_num_hidden_layers=1, pred_num_attention_heads=2, num_pooler_layers=1)


@register_backbone
def videomae_b(*, hf_dir: str | None = None) -> VideoMAEBackbone:
    """VideoMAE ViT-B/16 (16 x 224 x 224 clips), 768 features; `hf_dir`: a local folder of a
    VideoMAE-B model (e.g. a snapshot of MCG-NJU/videomae-base or videomae-base-finetuned-
    kinetics: CC-BY-NC 4.0, docs/backbones.md)."""
    return build_videomae("videomae_b", VIDEOMAE_B, hf_dir)


@register_backbone
def videomae_tiny(*, hf_dir: str | None = None) -> VideoMAEBackbone:
    """VideoMAE with 2 layers of width 32, patch 8 (8 x 32 x 32 clips), 32 features."""
    return build_videomae("videomae_tiny", VIDEOMAE_TINY, hf_dir)


@register_backbone
def vjepa2_vitl(*, hf_dir: str | None = None) -> VJEPA2Backbone:
    """V-JEPA 2 ViT-L/16 encoder, 1024 features; `hf_dir`: a local folder of a V-JEPA 2 ViT-L
    model (e.g. a snapshot of facebook/vjepa2-vitl-fpc64-256)."""
    return build_vjepa2("vjepa2_vitl", VJEPA2_L, hf_dir)


@register_backbone
def vjepa2_tiny(*, hf_dir: str | None = None) -> VJEPA2Backbone:
    """V-JEPA 2 encoder with 2 layers of width 32, patch 8, 32 features (8 x 32 x 32 clips)."""
    return build_vjepa2("vjepa2_tiny", VJEPA2_TINY, hf_dir)
