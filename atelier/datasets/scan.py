"""Finding and chunking the files of a directory to push."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from atelier.chunking import ChunkedFile, chunk_file
from atelier.errors import InvalidArgument


@dataclass(frozen=True, slots=True)
class LocalFile:
    """A regular file found under the pushed directory."""

    path: str  # relative, '/'-separated
    absolute: str
    size: int


def scan(root: Path) -> list[LocalFile]:
    """Every regular file under `root`, sorted by relative path. Symbolic links are followed only
    when they point at regular files inside `root`."""
    if not root.is_dir():
        raise InvalidArgument(f"{root} is not a directory", metadata={"field": "directory", "value": str(root)})
    found: list[LocalFile] = []
    real_root = os.path.realpath(root)
    stack = [str(root)]
    while stack:
        current = stack.pop()
        with os.scandir(current) as entries:
            for entry in entries:
                if entry.is_dir(follow_symlinks=False):
                    stack.append(entry.path)
                elif entry.is_file(follow_symlinks=True):
                    if entry.is_symlink() and not os.path.realpath(entry.path).startswith(real_root + os.sep):
                        continue
                    relative = os.path.relpath(entry.path, root).replace(os.sep, "/")
                    found.append(LocalFile(relative, entry.path, entry.stat().st_size))
    found.sort(key=lambda f: f.path)
    return found


def chunk(file: LocalFile) -> ChunkedFile:
    return chunk_file(file.absolute)
