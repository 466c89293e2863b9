"""Process-level settings that make the CPU engine fast without changing any number.

- glibc hands allocations above its mmap threshold (128 KiB at first) straight
  back to the kernel, so every fresh (R, n, 500) activation array page-faults
  anew; measured here, that doubled the cost of a small dataset's step. Raising
  the threshold and the trim threshold keeps freed buffers for reuse.
- Float32 subnormals appear in long runs and slow arithmetic by up to 50 %
  (SPEC section 7); flushing them to zero removes that.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools

import torch

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3


@functools.lru_cache(maxsize=1)
def tune_malloc() -> bool:
    """Keep large freed buffers in the heap (glibc only; a no-op elsewhere). Returns whether it applied."""
    name = ctypes.util.find_library("c")
    if not name:
        return False
    try:
        libc = ctypes.CDLL(name)
        ok = libc.mallopt(_M_MMAP_THRESHOLD, 32 * 1024 * 1024)  # glibc's maximum on 64-bit
        ok &= libc.mallopt(_M_TRIM_THRESHOLD, 1 << 30)
        return bool(ok)
    except (OSError, AttributeError):
        return False


def tune_process(threads: int = 0) -> None:
    """Apply the settings above; ``threads > 0`` also fixes torch's intra-op threads."""
    tune_malloc()
    torch.set_flush_denormal(True)
    if threads > 0:
        torch.set_num_threads(threads)
