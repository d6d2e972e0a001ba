"""Fetching a version into a directory: parallel, resumable and verified.

Files already present with the right content are kept, so an interrupted pull resumes. Every
chunk is checked against its digest as it arrives and every assembled file against its own
digest; a file appears under its final name only once complete and verified.
"""

from __future__ import annotations

import os
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

READ_BATCH_BYTES = 32 * 1024 * 1024
PARALLEL_STREAMS = 4
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
    version = client.get_version(source.version_name)
    files = list(client.list_files(version.name, full=True))
    directory.mkdir(parents=True, exist_ok=True)
    root = directory.resolve()
    todo = [f for f in files if not _already_there(root, f)]
    progress.phase("fetching", sum(f.size_bytes for f in todo))
    _fetch(client, version, root, todo, progress)
    return PullResult(version, len(files), len(todo), sum(f.size_bytes for f in todo))


def _target(root: Path, path: str) -> Path:
    target = (root / path).resolve()
    if not str(target).startswith(str(root) + os.sep):
        raise InvalidArgument(f"refusing to write {path!r} outside {root}")
    return target


def _already_there(root: Path, entry: pb.FileEntry) -> bool:
    target = _target(root, entry.path)
    try:
        if target.stat().st_size != entry.size_bytes:
            return False
    except FileNotFoundError:
        return False
    return file_digest(target) == entry.digest


def file_digest(path: Path) -> str:
    hasher = blake3()
    with open(path, "rb") as handle:
        while block := handle.read(8 * 1024 * 1024):
            hasher.update(block)
    return hasher.hexdigest()


class _Assembly:
    """Where each chunk goes, and which files are complete."""

    def __init__(self, root: Path, files: list[pb.FileEntry]) -> None:
        self.root = root
        self.places: dict[bytes, list[tuple[int, int]]] = defaultdict(list)
        self.remaining: dict[int, int] = {}
        self.files = files
        self.lock = threading.Lock()
        for index, entry in enumerate(files):
            position = 0
            for chunk in entry.chunks:
                self.places[chunk.digest].append((index, position))
                position += chunk.size_bytes
            self.remaining[index] = len(entry.chunks)
            partial = self.partial(index)
            partial.parent.mkdir(parents=True, exist_ok=True)
            with open(partial, "wb") as handle:
                handle.truncate(entry.size_bytes)
            if not entry.chunks:
                self.finish(index)

    def partial(self, index: int) -> Path:
        target = _target(self.root, self.files[index].path)
        return target.with_name(target.name + PARTIAL_SUFFIX)

    def write(self, digest: bytes, data: bytes) -> int:
        """Place a verified chunk everywhere it occurs; returns the bytes written."""
        written = 0
        for index, offset in self.places.get(digest, ()):
            fd = os.open(self.partial(index), os.O_WRONLY)
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
        entry = self.files[index]
        partial = self.partial(index)
        whole = entry.chunks[0].digest.hex() if len(entry.chunks) == 1 else None
        if whole != entry.digest and (whole is not None or file_digest(partial) != entry.digest):
            raise DataLoss(f"file {entry.path!r} does not match its digest after assembly")
        os.replace(partial, _target(self.root, entry.path))


def _fetch(
    client: DataClient, version: pb.DatasetVersion, root: Path, files: list[pb.FileEntry], progress: Progress
) -> None:
    if not files:
        return
    assembly = _Assembly(root, files)
    sizes = {c.digest: c.size_bytes for f in files for c in f.chunks}
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
        for future in [pool.submit(fetch, b) for b in batches if b]:
            future.result()
    unfinished = [files[i].path for i, left in assembly.remaining.items() if left > 0]
    if unfinished:
        raise DataLoss(f"{len(unfinished)} file(s) of {version.name} were not fully received, e.g. {unfinished[0]}")
