"""Fetching a version into a directory: parallel, resumable and verified.

Files already present with the right content are kept, so an interrupted pull resumes. Every
chunk is checked against its digest as it arrives and every assembled file against its own
digest; a file appears under its final name only once complete and verified.
"""

from __future__ import annotations

import contextvars
import os
import stat
import threading
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from blake3 import blake3

from atelier.chunking import digest as chunk_digest
from atelier.client.data import DataClient
from atelier.data.v1 import resources_pb2 as pb
from atelier.datasets.progress import NoProgress, Progress
from atelier.errors import DataLoss, InvalidArgument
from atelier.names import DatasetRef

READ_BATCH_BYTES = 16 * 1024 * 1024
PARALLEL_STREAMS = 3
PARTIAL_SUFFIX = ".atelier-partial"


@dataclass(frozen=True)
class PullResult:
    version: pb.DatasetVersion
    files: int
    fetched_files: int
    fetched_bytes: int


def pull(client: DataClient, source: DatasetRef, directory: Path, *, progress: Progress | None = None) -> PullResult:
    """Write every file of the version `source` names under `directory`."""
    progress = progress or NoProgress()
    if directory.exists() and not directory.is_dir():
        raise InvalidArgument(
            f"{directory} exists and is not a directory: pull into a new or existing directory",
            metadata={"field": "directory", "value": str(directory)},
        )
    version = client.get_version(source.version_name)
    files = list(client.list_files(version.name, full=True))
    directory.mkdir(parents=True, exist_ok=True)
    root = os.path.realpath(directory)
    targets = [_target(root, f.path) for f in files]
    fresh = not any(os.scandir(root))
    todo = [(f, t) for f, t in zip(files, targets, strict=True) if fresh or not _already_there(t, f)]
    progress.phase("fetching", sum(f.size_bytes for f, _ in todo))
    _fetch(client, version, todo, progress)
    return PullResult(version, len(files), len(todo), sum(f.size_bytes for f, _ in todo))


def _target(root: str, path: str) -> str:
    """Where a file of the version goes, refusing paths that would leave `root`."""
    target = os.path.normpath(os.path.join(root, path))
    if not target.startswith(os.path.join(root, "")) or target == root:
        raise InvalidArgument(f"refusing to write {path!r} outside {root}")
    return target


def _already_there(target: str, entry: pb.FileEntry) -> bool:
    try:
        found = os.stat(target)
    except FileNotFoundError:
        return False
    if stat.S_ISDIR(found.st_mode):
        raise InvalidArgument(
            f"{target} is a directory where the version has the file {entry.path!r}: move it away and pull again",
            metadata={"path": target},
        )
    return found.st_size == entry.size_bytes and file_digest(Path(target)) == entry.digest


def file_digest(path: Path) -> str:
    hasher = blake3()
    with open(path, "rb") as handle:
        while block := handle.read(8 * 1024 * 1024):
            hasher.update(block)
    return hasher.hexdigest()


class _Assembly:
    """Where each chunk goes, which files are complete, and the writing of files.

    A single-chunk file is written whole when its chunk arrives (one open, write, close and
    rename); a larger one is assembled with positioned writes into a partial file.
    """

    def __init__(self, files: list[tuple[pb.FileEntry, str]]) -> None:
        self.files = files
        self.places: dict[bytes, list[tuple[int, int]]] = defaultdict(list)
        self.remaining: dict[int, int] = {}
        self.lock = threading.Lock()
        self._made: set[str] = set()
        for index, (entry, target) in enumerate(files):
            position = 0
            for chunk in entry.chunks:
                self.places[chunk.digest].append((index, position))
                position += chunk.size_bytes
            self.remaining[index] = len(entry.chunks)
            if len(entry.chunks) != 1:
                self._create(index, target, entry.size_bytes)

    def _directory(self, target: str) -> None:
        parent = os.path.dirname(target)
        if parent not in self._made:
            os.makedirs(parent, exist_ok=True)
            self._made.add(parent)

    def _create(self, index: int, target: str, size: int) -> None:
        self._directory(target)
        with open(target + PARTIAL_SUFFIX, "wb") as handle:
            handle.truncate(size)
        if size == 0:
            self.finish(index)

    def write(self, digest: bytes, data: bytes) -> int:
        """Place a verified chunk everywhere it occurs; returns the bytes written."""
        written = 0
        for index, offset in self.places.get(digest, ()):
            entry, target = self.files[index]
            partial = target + PARTIAL_SUFFIX
            if len(entry.chunks) == 1:
                self._directory(target)
                flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
            else:
                flags = os.O_WRONLY
            fd = os.open(partial, flags, 0o644)
            try:
                os.pwrite(fd, data, offset)
            finally:
                os.close(fd)
            written += len(data)
            with self.lock:
                self.remaining[index] -= 1
                done = self.remaining[index] == 0
            if done:
                self.finish(index)
        return written

    def finish(self, index: int) -> None:
        entry, target = self.files[index]
        partial = target + PARTIAL_SUFFIX
        if len(entry.chunks) == 1:
            verified = entry.chunks[0].digest.hex() == entry.digest
        else:
            verified = file_digest(Path(partial)) == entry.digest
        if not verified:
            os.unlink(partial)
            raise DataLoss(f"file {entry.path!r} does not match its digest after assembly")
        os.replace(partial, target)


def _fetch(
    client: DataClient, version: pb.DatasetVersion, files: list[tuple[pb.FileEntry, str]], progress: Progress
) -> None:
    if not files:
        return
    assembly = _Assembly(files)
    sizes = {c.digest: c.size_bytes for f, _ in files for c in f.chunks}
    batches: list[list[bytes]] = [[]]
    batch_bytes = 0
    for digest, size in sizes.items():
        if batch_bytes >= READ_BATCH_BYTES:
            batches.append([])
            batch_bytes = 0
        batches[-1].append(digest)
        batch_bytes += size

    def fetch(batch: list[bytes]) -> None:
        for chunk in client.read_chunks(version.name, batch):
            if chunk_digest(chunk.data) != chunk.digest:
                raise DataLoss(f"chunk {chunk.digest.hex()[:16]} of {version.name} arrived corrupted")
            progress.advance(assembly.write(chunk.digest, chunk.data))

    with ThreadPoolExecutor(max_workers=PARALLEL_STREAMS) as pool:
        # Each fetch runs in a copy of this context: its calls continue the caller's trace and credentials.
        for future in [pool.submit(contextvars.copy_context().run, fetch, b) for b in batches if b]:
            future.result()
    unfinished = [files[i][0].path for i, left in assembly.remaining.items() if left > 0]
    if unfinished:
        raise DataLoss(f"{len(unfinished)} file(s) of {version.name} were not fully received, e.g. {unfinished[0]}")
