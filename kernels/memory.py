"""Freed memory kept for reuse: no page faults for the same large tensors step after step.

glibc's malloc returns every block above its mmap threshold (128 KiB at first, raised as blocks
are freed) to the kernel when it is freed, and trims the heap's top once it exceeds twice that;
a training step that allocates the same [256, 9515] tensors every step (DiffRec on yc: 10 MB
each) then takes thousands of page faults a step, each a zeroed page from the kernel (about 10 %
of a DiffRec step on this project's reference CPU). :func:`reuse_freed_memory` raises both
thresholds so that freed blocks stay in the process and are reused. Nothing computed changes;
the cost is that the process keeps its peak memory.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_THRESHOLD = -1, -2, -3
_done = False


def reuse_freed_memory() -> bool:
    """Tell glibc's malloc to keep freed memory (blocks up to 32 MiB); True if it took effect.

    Once per process; a no-op (False) where the C library is not glibc.
    """
    global _done
    if _done:
        return True
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    ok = (mallopt(_M_MMAP_THRESHOLD, 32 << 20) == 1 and mallopt(_M_TRIM_THRESHOLD, 1 << 30) == 1
          and mallopt(_M_TOP_PAD, 64 << 20) == 1)
    _done = ok
    return ok
