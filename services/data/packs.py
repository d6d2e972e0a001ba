"""Chunks packed into large objects, so that storing 100,000 small files is a few object writes.

A pack is the concatenation of chunks; the chunk index (database) says where each chunk lies.
Packs are written whole and indexed in one transaction after the object is durable, so a crash
loses at most the pack being filled, never an indexed chunk.
"""

from __future__ import annotations

import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Executor, Future
from itertools import accumulate

from blake3 import blake3

from atelier.chunking import digest as chunk_digest
from atelier.errors import DataLoss, InvalidArgument
from atelier.runtime.objectstore import ObjectStore
from services.data.store import DataStore, PackIndex

# Neighbouring chunks of one pack are fetched in one read when the gap between them is small.
_MAX_GAP = 256 * 1024
_MAX_READ = 16 * 1024 * 1024


def pack_key() -> str:
    """A fresh pack key; it starts with the creation time so that GC can tell an orphan left by a
    crash from a pack whose index is being written right now."""
    return f"packs/{time.time_ns():020d}-{uuid.uuid4().hex}"


def pack_age_seconds(key: str) -> float | None:
    """Seconds since a pack was created, from its key; None for keys not made by `pack_key()`."""
    stamp = key.removeprefix("packs/").split("-", 1)[0]
    return (time.time_ns() - int(stamp)) / 1e9 if stamp.isdigit() else None


class PackWriter:
    """Collects verified chunks of one upload and writes them out as packs.

    A pack being filled is the list of buffers received (written out one after another, never
    joined) and its index in columns: digests, offsets, lengths."""

    def __init__(
        self,
        objects: ObjectStore,
        store: DataStore,
        target_bytes: int,
        writers: Executor | None = None,
        indexer: Executor | None = None,
    ) -> None:
        self._objects = objects
        self._store = store
        self._target = target_bytes
        # Where full packs are written and then indexed; both None: right away, on this thread.
        self._writers = writers
        self._indexer = indexer
        self._parts: list[bytes | memoryview] = []
        self._size = 0
        self._index = PackIndex([], [], [])
        self._pending: set[bytes] = set()
        self._writes: list[Future[None]] = []
        self.stored_chunks = 0
        self.stored_bytes = 0

    def add_many(self, chunks: Sequence[tuple[bytes, bytes | memoryview]]) -> None:
        """Verify and buffer chunks the store does not hold yet; flush whenever a pack is full."""
        for digest, data in chunks:
            _verify(digest, data, "chunks")
        # The client sends only what FindMissingChunks reported missing; a chunk stored meanwhile by
        # another push is skipped when the pack is indexed, its bytes left for GC.
        for digest, data in chunks:
            if digest in self._pending:
                continue
            self._pending.add(digest)
            self._append(data, [digest], [len(data)])

    def add_packed(self, digests: Sequence[bytes], sizes: Sequence[int], data: bytes | memoryview) -> None:
        """Verify chunks sent end to end in `data` and buffer them; unless some are already
        buffered, `data` joins the pack as it is, without a copy per chunk."""
        if len(digests) != len(sizes) or sum(sizes) != len(data) or (sizes and min(sizes) <= 0):
            raise InvalidArgument(
                f"pack of {len(digests)} digests, {len(sizes)} sizes adding up to {sum(sizes)} and "
                f"{len(data)} bytes: give one positive size per digest, adding up to the data's length",
                metadata={"field": "pack.sizes"},
            )
        view = memoryview(data)
        start = 0
        for digest, end in zip(digests, accumulate(sizes), strict=True):
            # A digest of the wrong length never equals a BLAKE3 digest: _verify says which it was.
            if blake3(view[start:end]).digest() != digest:
                _verify(digest, view[start:end], "pack")
            start = end
        if not digests:
            return
        pending = self._pending
        if len(pending.union(digests)) != len(pending) + len(digests):
            spans = zip(digests, accumulate(sizes, initial=0), sizes, strict=False)
            self.add_many([(d, data[o : o + n]) for d, o, n in spans])
            return
        pending.update(digests)
        self._append(data, digests, sizes)

    def _append(self, data: bytes | memoryview, digests: Sequence[bytes], sizes: Sequence[int]) -> None:
        index = self._index
        index.digests.extend(digests)
        index.offsets.extend(accumulate(sizes, initial=self._size))
        index.offsets.pop()
        index.lengths.extend(sizes)
        self._parts.append(data)
        self._size += len(data)
        if self._size >= self._target:
            self._seal()

    def _seal(self) -> None:
        """Hand the full pack to the writers and the indexer (or write it now); start a new one."""
        if not self._parts:
            return
        parts, index = self._parts, self._index
        self._parts, self._size, self._index, self._pending = [], 0, PackIndex([], [], []), set()
        key = pack_key()
        size = sum(len(part) for part in parts)
        if self._writers is None or self._indexer is None:
            self._objects.put_parts(key, parts)
            self._index_pack(key, size, index)
            return
        written = self._writers.submit(self._objects.put_parts, key, parts)
        self._writes.append(self._indexer.submit(self._index_written, written, key, size, index))

    def _index_written(self, written: Future[None], key: str, size: int, index: PackIndex) -> None:
        """Index a pack once its object is durable (a failed write leaves it unindexed)."""
        written.result()
        self._index_pack(key, size, index)

    def _index_pack(self, key: str, size: int, index: PackIndex) -> None:
        with self._store.session() as session:
            self._store.add_pack(session, key, size, index)
        self.stored_chunks += len(index.digests)
        self.stored_bytes += size

    def flush(self) -> None:
        """Write what is buffered and wait for every pack of this upload: then all are durable."""
        self._seal()
        writes, self._writes = self._writes, []
        for write in writes:
            write.result()


class ChunkReader:
    """Reads chunks back from packs, verifying every one against its digest."""

    def __init__(self, objects: ObjectStore, store: DataStore) -> None:
        self._objects = objects
        self._store = store

    def read(self, digests: Sequence[bytes], corrupted: Callable[[bytes], DataLoss]) -> Iterator[tuple[bytes, bytes]]:
        """Yield `(digest, bytes)` for each distinct digest, grouped by pack for few reads.

        `corrupted(digest)` builds the error (naming dataset, version and file) raised when a chunk
        is missing or its bytes no longer match.
        """
        with self._store.session() as session:
            where = self._store.locate_chunks(session, list(dict.fromkeys(digests)))
        for digest in digests:
            if digest not in where:
                raise corrupted(digest)
        by_pack: dict[str, list[tuple[int, int, bytes]]] = defaultdict(list)
        for digest, (pack, offset, length) in where.items():
            by_pack[pack].append((offset, length, digest))
        for pack, entries in by_pack.items():
            entries.sort()
            for start, end, group in _coalesce(entries):
                try:
                    blob = self._objects.get(pack, start, end - start)
                except Exception as error:  # noqa: BLE001 - a lost pack is data loss of its chunks
                    raise corrupted(group[0][2]) from error
                for offset, length, digest in group:
                    data = blob[offset - start : offset - start + length]
                    if len(data) != length or chunk_digest(data) != digest:
                        raise corrupted(digest)
                    yield digest, data


def _coalesce(
    entries: list[tuple[int, int, bytes]],
) -> Iterator[tuple[int, int, list[tuple[int, int, bytes]]]]:
    """Group sorted `(offset, length, digest)` into reads of nearby ranges."""
    group: list[tuple[int, int, bytes]] = []
    start = end = 0
    for entry in entries:
        offset, length, _ = entry
        if group and (offset - end > _MAX_GAP or offset + length - start > _MAX_READ):
            yield start, end, group
            group = []
        if not group:
            start = offset
        group.append(entry)
        end = max(end, offset + length) if len(group) > 1 else offset + length
    if group:
        yield start, end, group


def _verify(digest: bytes, data: bytes | memoryview, field: str) -> None:
    """Raise InvalidArgument unless `data` hashes to `digest`."""
    if len(digest) != 32:
        raise InvalidArgument(
            f"chunk digest must be 32 bytes of BLAKE3, got {len(digest)} bytes", metadata={"field": f"{field}.digest"}
        )
    actual = chunk_digest(data)
    if actual != digest:
        raise InvalidArgument(
            f"chunk bytes do not match their digest {digest.hex()}: the bytes hash to {actual.hex()}",
            metadata={"field": f"{field}.data", "digest": digest.hex()},
        )
