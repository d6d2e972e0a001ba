"""Writing an object's file, large ones past the page cache.

Copying a 48 MiB pack into the page cache of a new file and syncing it cost about 0.16 s here, 0.12 s
of it CPU (the kernel allocating and filling cache pages); written with O_DIRECT from an aligned
buffer it took 0.035 s and 0.01 s of CPU, the disk reading the buffer itself. Objects of at least
DIRECT_MIN bytes are written that way where the filesystem allows it (not tmpfs, for one); the
others, and every object where O_DIRECT is refused, through the page cache. Either way the file is
synced before it is renamed into place.
"""

from __future__ import annotations

import errno
import mmap
import os
from collections.abc import Sequence
from pathlib import Path

DIRECT_MIN = 1024 * 1024
# O_DIRECT transfers must be whole blocks at aligned offsets from aligned memory: the buffer is a
# page-aligned anonymous mapping, written whole except the last, padded to a block and cut back.
_BLOCK = 4096
_BUFFER = 4 * 1024 * 1024
_O_DIRECT = getattr(os, "O_DIRECT", 0)


class _Refused(Exception):
    """The filesystem does not take O_DIRECT writes: write through the page cache instead."""


def write_new_file(path: Path, parts: Sequence[bytes | memoryview]) -> None:
    """Create `path` (which must not exist) holding `parts` end to end, synced to disk."""
    total = sum(len(part) for part in parts)
    if _O_DIRECT and total >= DIRECT_MIN:
        try:
            _write_direct(path, parts, total)
            return
        except _Refused:
            path.unlink(missing_ok=True)
    # O_EXCL: the caller's random name must be its alone; 0o644 (less the umask) like an ordinary file.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    with os.fdopen(fd, "wb") as file:
        file.writelines(parts)
        file.flush()
        os.fsync(file.fileno())


def _write_direct(path: Path, parts: Sequence[bytes | memoryview], total: int) -> None:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _O_DIRECT, 0o644)
    except OSError as error:
        if error.errno == errno.EINVAL:
            raise _Refused from error
        raise
    buffer = mmap.mmap(-1, _BUFFER)
    view = memoryview(buffer)
    try:
        filled = 0
        for part in parts:
            data = memoryview(part).cast("B")
            taken = 0
            while taken < len(data):
                step = min(_BUFFER - filled, len(data) - taken)
                view[filled : filled + step] = data[taken : taken + step]
                filled += step
                taken += step
                if filled == _BUFFER:
                    _write_all(fd, view)
                    filled = 0
        if filled:
            padded = -(-filled // _BLOCK) * _BLOCK
            view[filled:padded] = bytes(padded - filled)
            with view[:padded] as tail:  # released even when the write fails, so the buffer can close
                _write_all(fd, tail)
            os.ftruncate(fd, total)
        os.fsync(fd)
    finally:
        view.release()
        buffer.close()
        os.close(fd)


def _write_all(fd: int, block: memoryview) -> None:
    try:
        written = os.write(fd, block)
    except OSError as error:
        if error.errno == errno.EINVAL:  # alignment the filesystem will not take
            raise _Refused from error
        raise
    if written != len(block):
        # A short direct write leaves an unaligned offset; the page cache copes with what follows.
        raise _Refused
