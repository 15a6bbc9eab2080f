"""`retain_freed_memory`: malloc keeps clip-sized buffers (run in a child: it is process-wide)."""

from __future__ import annotations

import subprocess
import sys

CHILD = """
import resource, sys, numpy as np
if sys.argv[1] == "retain":
    from dear_ray.data.dataset import retain_freed_memory
    assert retain_freed_memory()
np._core.multiarray._set_madvise_hugepage(False)  # count 4 KiB pages
for _ in range(3):  # 40 MiB: above glibc's largest self-adjusted mmap threshold (32 MiB)
    np.empty(40 * 2**20, np.uint8).fill(1)
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(10):
    np.empty(40 * 2**20, np.uint8).fill(1)
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def faults(mode: str) -> int:
    out = subprocess.run([sys.executable, "-c", CHILD, mode], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    return int(out.stdout.strip())


def test_freed_clip_buffers_are_reused_without_page_faults():
    # glibc's default: each buffer is fresh memory, 10240 faults a buffer
    assert faults("default") > 50_000
    assert faults("retain") < 500
