"""An object store on a local filesystem: each object is one file under a root directory.

Key `packs/ab/abcd` lives at `<root>/packs/ab/abcd`. Writes go to a temp file in the target
directory and are renamed into place, so a reader (or a process restarted after a crash) sees
either the old object or the complete new one; leftover temp files are never reported as objects.
"""

from __future__ import annotations

import errno
import os
import secrets
import stat
from collections.abc import Iterator, Sequence
from pathlib import Path

from atelier.errors import (
    AtelierError,
    FailedPrecondition,
    Internal,
    InvalidArgument,
    NotFound,
    ResourceExhausted,
)
from atelier.runtime.objectstore.base import ObjectStore
from atelier.runtime.objectstore.direct import write_new_file

# Temp files start with this; keys may not have a segment starting with it, so a temp file can
# never be mistaken for (or collide with) a real object.
TEMP_PREFIX = ".tmp-"

_KEY_FORM = "keys are relative POSIX paths like 'packs/ab/abcd'"


def validate_key(key: str) -> None:
    """Raise `InvalidArgument` naming `key` unless it is a safe relative POSIX path.

    Shared by every backend so that a key accepted by one store is accepted by all of them.
    """
    reason = key_problem(key)
    if reason is not None:
        raise InvalidArgument(f"object key {key!r} is invalid: {reason}; {_KEY_FORM}")


def key_problem(key: str) -> str | None:
    """Why `key` is not a valid object key, or None when it is."""
    if not key:
        return "it is empty"
    if "\\" in key:
        return "it contains a backslash"
    if "\x00" in key:
        return "it contains a NUL character"
    if key.startswith("/"):
        return "it is absolute"
    for segment in key.split("/"):
        if segment == "":
            return "it has an empty path segment"
        if segment in (".", ".."):
            return f"it has a {segment!r} path segment"
        if segment.startswith(TEMP_PREFIX):
            return f"segments starting with {TEMP_PREFIX!r} are reserved for temp files"
    return None


def check_range(key: str, offset: int, length: int | None) -> None:
    """Raise `InvalidArgument` for a negative offset or length."""
    if offset < 0:
        raise InvalidArgument(f"offset {offset} for object {key!r} is invalid: it must be >= 0")
    if length is not None and length < 0:
        raise InvalidArgument(f"length {length} for object {key!r} is invalid: it must be >= 0 or None")


def _fsync_dir(path: Path) -> None:
    # A rename or unlink is only durable once the directory holding the entry is synced.
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _make_dirs_durably(path: Path) -> None:
    """Create `path` and any missing parents, syncing each parent so the new entries survive a crash."""
    missing: list[Path] = []
    current = path
    while not current.is_dir():
        missing.append(current)
        current = current.parent
    for directory in reversed(missing):
        try:
            directory.mkdir()
        except FileExistsError:
            # A concurrent put created it first; only a non-directory here is a real conflict.
            if not directory.is_dir():
                raise
        _fsync_dir(directory.parent)


def _translate_os_error(key: str, action: str, exc: OSError) -> AtelierError:
    """Turn a filesystem failure into the platform's error, keeping the OS message for operators."""
    detail = f"cannot {action} object {key!r}: {exc.strerror or exc}"
    if isinstance(exc, NotADirectoryError | FileExistsError | IsADirectoryError):
        # On a filesystem `a` and `a/b` cannot both be objects: one would be a file and a directory.
        return FailedPrecondition(f"{detail} (the key clashes with an existing object or key prefix)")
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return ResourceExhausted(detail)
    return Internal(detail)


class LocalObjectStore(ObjectStore):
    """Objects stored as files under `root`; safe for concurrent use by threads and processes."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            detail = exc.strerror or exc
            raise Internal(f"cannot create object store root {str(self.root)!r}: {detail}") from exc

    def __repr__(self) -> str:
        return f"LocalObjectStore({str(self.root)!r})"

    def _path(self, key: str) -> Path:
        validate_key(key)
        return self.root.joinpath(*key.split("/"))

    def put(self, key: str, data: bytes) -> None:
        """Write `data` to a temp file beside the target, sync it, then rename it over the target."""
        path = self._path(key)
        try:
            _make_dirs_durably(path.parent)
            self._write_atomically(path, data)
        except OSError as exc:
            raise _translate_os_error(key, "write", exc) from exc

    def put_parts(self, key: str, parts: Sequence[bytes | memoryview]) -> None:
        """Write the parts one after another to a temp file, sync it, then rename it over the target."""
        path = self._path(key)
        try:
            _make_dirs_durably(path.parent)
            self._write_atomically(path, parts)
        except OSError as exc:
            raise _translate_os_error(key, "write", exc) from exc

    @staticmethod
    def _write_atomically(path: Path, data: bytes | Sequence[bytes | memoryview]) -> None:
        temp = path.with_name(f"{TEMP_PREFIX}{secrets.token_hex(8)}")
        try:
            write_new_file(temp, [data] if isinstance(data, bytes) else data)
            os.replace(temp, path)
        except BaseException:
            temp.unlink(missing_ok=True)
            raise
        _fsync_dir(path.parent)

    def get(self, key: str, offset: int = 0, length: int | None = None) -> bytes:
        """Read the requested range with positioned reads on one descriptor.

        A range past the end of the object is cut short, as with a file read.
        """
        path = self._path(key)
        check_range(key, offset, length)
        try:
            fd = os.open(path, os.O_RDONLY)
        except (FileNotFoundError, NotADirectoryError) as exc:
            raise NotFound(f"object {key!r} not found") from exc
        except OSError as exc:
            raise _translate_os_error(key, "read", exc) from exc
        try:
            return self._read_range(key, fd, offset, length)
        except OSError as exc:
            raise _translate_os_error(key, "read", exc) from exc
        finally:
            os.close(fd)

    @staticmethod
    def _read_range(key: str, fd: int, offset: int, length: int | None) -> bytes:
        status = os.fstat(fd)
        if not stat.S_ISREG(status.st_mode):
            # A directory opens fine for reading, but it is a key prefix, not an object.
            raise NotFound(f"object {key!r} not found")
        wanted = max(0, status.st_size - offset) if length is None else length
        chunks: list[bytes] = []
        # pread may return fewer bytes than asked (Linux caps one call near 2 GiB), so loop to EOF.
        while wanted > 0:
            chunk = os.pread(fd, wanted, offset)
            if not chunk:
                break
            chunks.append(chunk)
            offset += len(chunk)
            wanted -= len(chunk)
        return b"".join(chunks)

    def delete(self, key: str) -> None:
        """Unlink the object's file; a missing object (or a key prefix directory) is left alone."""
        path = self._path(key)
        try:
            if not path.is_file():
                return
            path.unlink(missing_ok=True)
            _fsync_dir(path.parent)
        except OSError as exc:
            raise _translate_os_error(key, "delete", exc) from exc

    def exists(self, key: str) -> bool:
        """Whether a regular file is stored for `key` (directories are key prefixes, not objects)."""
        path = self._path(key)
        try:
            return path.is_file()
        except OSError as exc:
            # is_file() swallows "no such file" itself; what is left (e.g. EACCES) is a real failure.
            raise _translate_os_error(key, "check", exc) from exc

    def list(self, prefix: str = "") -> Iterator[tuple[str, int]]:
        """Yield `(key, size)` for keys starting with `prefix`, in key order, lazily.

        Only the deepest directory wholly named by `prefix` is walked.
        """
        directory = prefix.rpartition("/")[0]
        if prefix.startswith("/") or (directory and key_problem(directory) is not None):
            # No valid key can start with such a prefix; returning early also keeps `..` from
            # walking outside the root.
            return
        start = self.root.joinpath(*directory.split("/")) if directory else self.root
        yield from _walk_sorted(start, f"{directory}/" if directory else "", prefix)


def _walk_sorted(directory: Path, base: str, prefix: str) -> Iterator[tuple[str, int]]:
    """Yield `(key, size)` for files below `directory` (whose keys start with `base`) matching `prefix`.

    Keys come out in string order, which is also their UTF-8 byte order, as S3 lists them.
    """
    try:
        with os.scandir(directory) as scan:
            # Temp files and stray files whose names are not valid keys are never objects.
            entries = [entry for entry in scan if key_problem(entry.name) is None]
    except (FileNotFoundError, NotADirectoryError):
        return
    except OSError as exc:
        raise _translate_os_error(base or ".", "list", exc) from exc
    # A directory `a` sorts as `a/` so that `a-b` (`-` < `/`) comes before `a/x`, as in key order.
    for entry in sorted(entries, key=_sort_name):
        if entry.is_dir():
            subtree = f"{base}{entry.name}/"
            if subtree.startswith(prefix) or prefix.startswith(subtree):
                yield from _walk_sorted(Path(entry.path), subtree, prefix)
        elif entry.is_file() and (key := base + entry.name).startswith(prefix):
            size = _size_or_none(entry)
            if size is not None:
                yield key, size


def _sort_name(entry: os.DirEntry[str]) -> str:
    return f"{entry.name}/" if entry.is_dir() else entry.name


def _size_or_none(entry: os.DirEntry[str]) -> int | None:
    try:
        return entry.stat().st_size
    except FileNotFoundError:
        # Deleted between the scan and the stat: it is simply no longer listed.
        return None
