"""Keeping freed message buffers in the process for reuse, for processes that move bulk data.

A push of 400 MB goes through a few hundred messages of several MiB. glibc's malloc serves blocks
that large with fresh mappings, or returns the freed top of its heap to the system, so each new
message buffer is fresh memory that faults in page by page: about 180,000 page faults on each side
of such a push, a fifth of the data service's CPU. Raising the mapping and trimming thresholds lets
freed buffers be reused instead (at the price of keeping up to `trim_bytes` of freed memory).
"""

from __future__ import annotations

import ctypes
import sys

# mallopt parameters (malloc.h).
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
# glibc's largest mapping threshold on 64-bit systems (larger values are refused).
MMAP_THRESHOLD_MAX = 32 * 1024 * 1024


def keep_freed_buffers(trim_bytes: int = 256 * 1024 * 1024) -> bool:
    """Serve blocks up to 32 MiB from the heap and keep up to `trim_bytes` of it free for reuse;
    whether the C library took the settings (glibc does; elsewhere this does nothing)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD_MAX)) and bool(mallopt(_M_TRIM_THRESHOLD, trim_bytes))
