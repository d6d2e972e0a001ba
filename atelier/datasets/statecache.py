"""What pushes learned about local files, so that an unchanged file is not read and hashed again.

Like git's index and DVC's state database: a file's chunking is remembered against its size,
modification and change times and inode. A file modified within the last seconds before the scan is
never trusted from the cache, since a second change in the same timestamp tick would go unseen.
"""

from __future__ import annotations

import os
import sqlite3
import struct
import time
from collections.abc import Iterable
from pathlib import Path

from atelier.chunking import ChunkedFile, ChunkSpan

Stamp = tuple[int, int, int, int]  # size, mtime_ns, ctime_ns, inode
_RACY_NS = 2_000_000_000
_SPAN = struct.Struct("<32sQ")
# A row already remembered as it is is left alone: a push into a store that lacks what the cache
# knows reads every file again, and rewriting 100,000 unchanged rows would cost twice the lookups.
_UPSERT = (
    "INSERT INTO files VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (path) DO UPDATE SET size = excluded.size, "
    "mtime_ns = excluded.mtime_ns, ctime_ns = excluded.ctime_ns, inode = excluded.inode, chunking = excluded.chunking "
    "WHERE (size, mtime_ns, ctime_ns, inode, chunking) IS NOT "
    "(excluded.size, excluded.mtime_ns, excluded.ctime_ns, excluded.inode, excluded.chunking)"
)


def cache_path() -> Path | None:
    """`$XDG_CACHE_HOME/atelier/files.sqlite3` (default `~/.cache`); None when ATELIER_PUSH_CACHE=off."""
    if os.environ.get("ATELIER_PUSH_CACHE", "on").lower() in ("off", "0", "false", "no"):
        return None
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "atelier" / "files.sqlite3"


def stamp_of(result: os.stat_result) -> Stamp:
    return (result.st_size, result.st_mtime_ns, result.st_ctime_ns, result.st_ino)


def encode(cut: ChunkedFile) -> bytes:
    return bytes.fromhex(cut.digest) + b"".join(_SPAN.pack(s.digest, s.length) for s in cut.chunks)


def decode(blob: bytes, size: int) -> ChunkedFile:
    if len(blob) == 32 + _SPAN.size:  # one chunk: the common case, without the loop
        digest, length = _SPAN.unpack_from(blob, 32)
        return ChunkedFile(size, blob[:32].hex(), (ChunkSpan(digest, 0, length),))
    spans: list[ChunkSpan] = []
    offset = 0
    for start in range(32, len(blob), _SPAN.size):
        digest, length = _SPAN.unpack_from(blob, start)
        spans.append(ChunkSpan(digest, offset, length))
        offset += length
    return ChunkedFile(size, blob[:32].hex(), tuple(spans))


class StateCache:
    """A SQLite table of (path, stamp) -> chunking; every failure just means "not cached"."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        # Written from a background thread while a push commits (one thread at a time).
        self._db = sqlite3.connect(path, timeout=5, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS files (path TEXT PRIMARY KEY, size INTEGER, mtime_ns INTEGER, "
            "ctime_ns INTEGER, inode INTEGER, chunking BLOB)"
        )
        self.started_ns = time.time_ns()

    @classmethod
    def open(cls) -> StateCache | None:
        where = cache_path()
        if where is None:
            return None
        try:
            return cls(where)
        except (OSError, sqlite3.Error):
            return None

    def lookup(self, root: str) -> dict[str, tuple[Stamp, bytes]]:
        """Everything remembered under directory `root` (absolute)."""
        prefix = root.rstrip(os.sep) + os.sep
        try:
            rows = self._db.execute(
                "SELECT path, size, mtime_ns, ctime_ns, inode, chunking FROM files WHERE path >= ? AND path < ?",
                (prefix, prefix[:-1] + chr(ord(os.sep) + 1)),
            ).fetchall()
        except sqlite3.Error:
            return {}
        return {path: ((size, mtime, ctime, inode), blob) for path, size, mtime, ctime, inode, blob in rows}

    def entries(self, paths: list[str]) -> dict[str, tuple[Stamp, bytes]]:
        """What is remembered of each of `paths` (absolute) that the cache knows."""
        found: dict[str, tuple[Stamp, bytes]] = {}
        try:
            for start in range(0, len(paths), 500):
                part = paths[start : start + 500]
                found.update(
                    (path, ((size, mtime, ctime, inode), blob))
                    for path, size, mtime, ctime, inode, blob in self._db.execute(
                        "SELECT path, size, mtime_ns, ctime_ns, inode, chunking FROM files "
                        f"WHERE path IN ({', '.join('?' * len(part))})",
                        part,
                    )
                )
        except sqlite3.Error:
            return {}
        return found

    def trusted(self, stamp: Stamp) -> bool:
        """Whether a file with this stamp is old enough for its cache entry to be believed."""
        return stamp[1] < self.started_ns - _RACY_NS

    def remember(self, entries: Iterable[tuple[str, Stamp, ChunkedFile]]) -> None:
        rows = [(path, *stamp, encode(cut)) for path, stamp, cut in entries if self.trusted(stamp)]
        if not rows:
            return
        try:
            self._db.execute("BEGIN")
            self._db.executemany(_UPSERT, rows)
            self._db.execute("COMMIT")
        except sqlite3.Error:
            self._db.rollback()

    def close(self) -> None:
        self._db.close()
