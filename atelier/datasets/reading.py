"""Reading the files of a push: each file's chunking, its bytes and (for the state cache) its stamp.

A push of 100,000 small files is mostly four system calls and a hash per file.
"""

from __future__ import annotations

import mmap
import os
from collections.abc import Generator

from atelier.chunking import MIN_CHUNK, ChunkedFile, chunk_bytes, chunk_small
from atelier.datasets.statecache import Stamp, stamp_of
from atelier.errors import FailedPrecondition

# The first read of a file: a file of one chunk comes whole, and a read that fills it means there is
# more. (Not larger: os.read allocates what it is asked for, and for 100,000 small files an
# allocation of 256 KiB per read costs more than reading them.)
_FIRST_READ = MIN_CHUNK + 1
# Files are opened without updating their access time where the system allows (Linux, for files
# the user owns), as git does: the first read of a freshly written file would otherwise write its
# inode back, 100,000 inode writes for a new tree of 100,000 files.
_NOATIME = os.O_RDONLY | getattr(os, "O_NOATIME", 0)
_DIRECTORY = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0)
# Whether files can be opened relative to an open directory (not on Windows).
_RELATIVE_OPEN = os.open in os.supports_dir_fd
# A file read: its chunking, its bytes (a view of a memory-mapped file for large files) and, when
# asked, its stamp for the state cache.
Read = tuple[ChunkedFile, bytes | memoryview, Stamp | None]


def read_files(paths: list[str], stamped: bool) -> Generator[Read, None, None]:
    """`read_and_cut` of each path, in order, on the calling thread. Each file is opened relative to
    its directory, kept open while the files after it share it (a push's files come sorted, so a
    directory's files are mostly together): the kernel then walks one name rather than the whole
    path (0.42 s against 0.47 s for 100,000 files five levels deep). (Reader threads were tried:
    for 100,000 files of 4 KiB, two of them took 0.73 s of CPU and 0.87 s against 0.60 s and 0.66 s
    for one thread, the GIL changing hands around every system call costing more than the calls.)"""
    if not _RELATIVE_OPEN:
        for path in paths:
            try:
                read = read_and_cut(path, stamped)
            except OSError as error:
                raise unreadable(path, error) from None
            yield read
        return
    folder: str | None = None
    directory = -1
    try:
        for path in paths:
            head, _, name = path.rpartition(os.sep)
            try:
                if head != folder:
                    if directory >= 0:
                        os.close(directory)
                        directory = -1
                    directory = os.open(head or os.sep, _DIRECTORY)
                    folder = head
                read = read_and_cut(path, stamped, directory, name)
            except OSError as error:
                raise unreadable(path, error) from None
            yield read
    finally:
        if directory >= 0:
            os.close(directory)


def unreadable(path: str, error: OSError) -> FailedPrecondition:
    """A file of a push that could not be read, as one line naming it."""
    if isinstance(error, FileNotFoundError):
        return FailedPrecondition(f"{path} disappeared during the push; push again", metadata={"path": path})
    return FailedPrecondition(f"cannot read {path}: {error.strerror or error}", metadata={"path": path})


def read_and_cut(path: str, stamped: bool = False, directory: int | None = None, name: str = "") -> Read:
    """Chunk a file, keeping its bytes for sending (and, when asked, its stamp for the state cache).
    A small file takes one open, one read and one close; files over 64 MiB are memory-mapped. With
    `directory` (an open directory's descriptor), the file opened is `name` in it, `path` its path."""
    where, base = (name, directory) if directory is not None else (path, None)
    try:
        fd = os.open(where, _NOATIME, dir_fd=base)
    except PermissionError:  # O_NOATIME on a file of another user
        fd = os.open(where, os.O_RDONLY, dir_fd=base)
    try:
        data = os.read(fd, _FIRST_READ)
        stamp = stamp_of(os.fstat(fd)) if stamped else None
        if len(data) <= MIN_CHUNK:
            return chunk_small(data), data, stamp
        size = os.fstat(fd).st_size
        if size <= 64 * 1024 * 1024:
            parts = [data]
            have = len(data)
            # Ask for what is left (plus one byte, to see a file that grew), never more than 8 MiB.
            while block := os.read(fd, min(8 * 1024 * 1024, max(size - have, 0) + 1)):
                parts.append(block)
                have += len(block)
            whole = b"".join(parts)
            return chunk_bytes(whole), whole, stamp
        mapped = mmap.mmap(fd, 0, access=mmap.ACCESS_READ)
        view = memoryview(mapped)
        return chunk_bytes(view), view, stamp
    finally:
        os.close(fd)
