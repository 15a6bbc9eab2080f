"""`retain_freed_memory`: malloc keeps clip-sized buffers (run in a child: it is process-wide)."""

from __future__ import annotations

import subprocess
import sys

import pytest

CHILD = """
import resource, sys, numpy as np
mode, mib, warm, measured = sys.argv[1], *map(int, sys.argv[2:])
if mode == "retain":
    from dear_ray.data.dataset import retain_freed_memory
    assert retain_freed_memory()
np._core.multiarray._set_madvise_hugepage(False)  # count 4 KiB pages
for _ in range(warm):
    np.empty(mib * 2**20, np.uint8).fill(1)
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(measured):
    np.empty(mib * 2**20, np.uint8).fill(1)
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def faults(mode: str, mib: int, warm: int, measured: int) -> int:
    out = subprocess.run([sys.executable, "-c", CHILD, mode, str(mib), str(warm), str(measured)],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return int(out.stdout.strip())


@pytest.mark.parametrize("mib, warm, measured", [
    (40, 3, 10),  # a training clip's buffers: above glibc's largest self-adjusted threshold (32 MiB)
    (300, 1, 1),  # 10 x 3 test views at 256: 189 MB uint8, 754 MB float
])
def test_freed_clip_buffers_are_reused_without_page_faults(mib, warm, measured):
    pages = mib * 256 * measured
    assert faults("default", mib, warm, measured) > 0.9 * pages  # glibc's default: fresh memory
    assert faults("retain", mib, warm, measured) < 500
