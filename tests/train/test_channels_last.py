"""`to_channels_last_3d`: the Train worker's memory layout, on every backbone x head of the sweeps."""

from __future__ import annotations

import pytest
import torch

from dear_ray.models import build_recognizer
from dear_ray.train.loop import to_channels_last_3d


@pytest.mark.parametrize("backbone, head, shape", [
    ("r3d18_tiny", "dear", (2, 3, 16, 40, 40)),  # the CED head's Conv2d: 4-D weights
    ("tsm_tiny", "softmax", (2, 3, 8, 32, 32)),   # a Conv2d backbone: no 5-D weight at all
    ("i3d_tiny", "sdn", (2, 3, 8, 32, 32)),
])
def test_five_d_weights_go_channels_last_and_outputs_do_not_change(backbone, head, shape):
    torch.manual_seed(0)
    options = {"temporal_kernel": 1} if head == "dear" else {}
    if head == "sdn":
        options = {"num_places": 3}
    model = build_recognizer(backbone=backbone, head=head, num_classes=4, head_options=options)
    model.eval()
    clips = torch.randn(*shape)
    with torch.no_grad():
        before = model.backbone.forward_features(clips).maps
    if any(p.dim() == 4 for p in model.parameters()):  # the plain API raises on this model
        with pytest.raises(RuntimeError, match="rank 5"):
            model.to(memory_format=torch.channels_last_3d)
    out = to_channels_last_3d(model)
    assert out is model
    for name, p in model.named_parameters():
        if p.dim() == 5:
            assert p.is_contiguous(memory_format=torch.channels_last_3d), name
        else:
            assert p.is_contiguous(), name
    with torch.no_grad():
        after = model.backbone.forward_features(
            clips.contiguous(memory_format=torch.channels_last_3d)).maps
    for a, b in zip(before if isinstance(before, tuple) else (before,),
                    after if isinstance(after, tuple) else (after,)):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
