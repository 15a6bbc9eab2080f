"""Video backbones behind one contract (docs/architecture.md, "Backbone contract").

`create_backbone(name, **options)` builds one of `list_backbones()`; every backbone has
`num_features`, `debias_channels`, `aux_channels`, `segmental` (True for TSM: the maps are per-frame
2D features and the classifier works per segment, then averages them, as MMAction2's TSMHead),
`head_init_std` (the classifier init std of MMAction2's head for it: 0.01, TSM 0.001) and
`forward_features(x) -> BackboneOutput`. torchvision's video models (`tv_cnn`, `tv_transformer`)
and transformers' VideoMAE / V-JEPA 2 (`hf_video`, optional dependency) are listed in
docs/backbones.md.
"""

from . import hf_video, r3d18, resnet3d, slowfast, tpn, tsm, tv_cnn, tv_transformer  # noqa: F401  (registers the presets)
from ._registry import BACKBONES, create_backbone, list_backbones, register_backbone
from .output import BackboneOutput

__all__ = ["BACKBONES", "BackboneOutput", "create_backbone", "list_backbones", "register_backbone"]
