"""Fixtures of the model tests."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture
def seed_and_one_thread():
    """Seed 0 and one intra-op thread: the CI box has 2 shared cores, and oversubscription makes
    the tiny models' steps much slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    yield
    torch.set_num_threads(threads)
