"""Fixtures shared by the test packages."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def sweep_synth(tmp_path_factory):
    """The synthetic data set of the end-to-end sweeps (3 known + 2 unknown classes, 6 videos a
    class, 16 frames of 40x40: 8-frame clips at interval 2 span a whole video)."""
    from dear_ray.data.synth import generate_dataset

    root = tmp_path_factory.mktemp("sweep_synth")
    generate_dataset(root, seed=0, known_classes=3, unknown_classes=2, videos_per_class=6,
                     frames=16, size=40, workers=1)
    return root
