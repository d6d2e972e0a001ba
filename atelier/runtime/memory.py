"""How the process holds memory: freed message buffers kept for reuse (for processes that move bulk
data), and start-up's objects kept out of the garbage collector's way (for every server).

A push of 400 MB goes through a few hundred messages of several MiB. glibc's malloc serves blocks
that large with fresh mappings, or returns the freed top of its heap to the system, so each new
message buffer is fresh memory that faults in page by page: about 180,000 page faults on each side
of such a push, a fifth of the data service's CPU. Raising the mapping and trimming thresholds lets
freed buffers be reused instead (at the price of keeping up to `trim_bytes` of freed memory).
"""

from __future__ import annotations

import ctypes
import gc
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


def freeze_startup_objects() -> None:
    """Collect once, then move every object alive now into the collector's permanent generation.

    Call it once a server has started: what start-up made (modules, generated descriptors, the REST app and
    its routes, settings, channels) lives as long as the process, yet every full pass of the cyclic
    garbage collector walked it again. Under load those passes came every few seconds and held the event
    loop for tens of milliseconds: the REST gateway's p99 was 22-41 ms in three runs, 11-13 ms with
    start-up's objects frozen (benchmarks/gateway.py, docs/performance.md). Objects made later are
    collected as before."""
    gc.collect()
    gc.freeze()
