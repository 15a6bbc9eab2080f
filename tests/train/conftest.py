"""One tiny synthetic data set per session (3 known + 2 unknown classes, 8 frames of 32x32)."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def synth_root(tmp_path_factory):
    """The root of a generated data set: lists, classes.txt and videos (SPEC section 5)."""
    from dear_ray.data.synth import generate_dataset

    root = tmp_path_factory.mktemp("synth")
    generate_dataset(root, seed=0, workers=1, known_classes=3, unknown_classes=2,
                     videos_per_class=4, frames=8, size=32)
    return root
