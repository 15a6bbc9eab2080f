"""Video backbones behind one contract (docs/architecture.md, "Backbone contract").

`create_backbone(name, **options)` builds one of `list_backbones()`; every backbone has
`num_features`, `debias_channels`, `aux_channels`, `segmental` (True for TSM: the maps are per-frame
2D features and the classifier works per segment, then averages them, as MMAction2's TSMHead),
`head_init_std` (the classifier init std of MMAction2's head for it: 0.01, TSM 0.001) and
`forward_features(x) -> BackboneOutput`.
"""

from . import r3d18, resnet3d, slowfast, tpn, tsm  # noqa: F401  (registers the presets)
from ._registry import BACKBONES, create_backbone, list_backbones, register_backbone
from .output import BackboneOutput

__all__ = ["BACKBONES", "BackboneOutput", "create_backbone", "list_backbones", "register_backbone"]
