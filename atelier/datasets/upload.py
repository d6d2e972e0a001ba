"""Sending a file tree's chunks: the ones the store lacks, in durable batches, then its manifest's.

Files are read and cut on the calling thread while sender threads ask which chunks are missing and
send them, one batch per UploadChunks call.
"""

from __future__ import annotations

import contextvars
import functools
import mimetypes
import os
import queue
import threading
from bisect import bisect_left
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass
from itertools import accumulate

from atelier.chunking import ChunkedFile, chunk_bytes
from atelier.client.data import DataClient
from atelier.data.v1 import resources_pb2 as pb
from atelier.datasets.manifest import encode_entry
from atelier.datasets.progress import Progress
from atelier.datasets.reading import Read, read_files
from atelier.datasets.scan import LocalFile
from atelier.datasets.statecache import Stamp, StateCache, decode, stamp_of
from atelier.errors import FailedPrecondition

# Chunks are sent in calls of about this many bytes (about one pack of the service); each call's
# chunks are durable when it returns.
BATCH_BYTES = 48 * 1024 * 1024
# Batches in flight at once: while one waits for the service to store its pack, another is sent.
SENDERS = 2
# Each message carries its chunks end to end in one buffer of about this size (under the
# service's default 8 MiB message limit).
MESSAGE_BYTES = 4 * 1024 * 1024
# Files sampled before a push to judge whether the state cache can spare reading (see
# `_Uploader._cache_helps`).
PROBE_FILES = 64
# A chunk to send: its digest and its bytes (a view into a memory-mapped file for large files).
Piece = tuple[bytes, bytes | memoryview]


@functools.cache
def _media_type_of(suffix: str) -> str:
    return mimetypes.guess_type("x" + suffix, strict=False)[0] or ""


def media_type(path: str) -> str:
    """The media type a file's extension implies (cached per extension: pushes see few of them)."""
    name = path.rpartition("/")[2]
    dot = name.rfind(".")
    return _media_type_of(name[dot:].lower()) if dot > 0 else ""


@dataclass(frozen=True)
class UploadedTree:
    """A file tree whose chunks, and those of its serialized manifest, are all stored: ready to
    commit."""

    manifest: bytes
    manifest_cut: ChunkedFile
    files: int
    total_bytes: int
    uploader: _Uploader

    @property
    def digest(self) -> str:
        return self.manifest_cut.digest

    def manifest_refs(self) -> list[pb.ChunkRef]:
        return [pb.ChunkRef(digest=c.digest, size_bytes=c.length) for c in self.manifest_cut.chunks]


def upload_tree(
    client: DataClient,
    project: str,
    files: list[LocalFile],
    progress: Progress,
    cache: StateCache | None = None,
    root: str = "",
    head_digest: str = "",
) -> UploadedTree:
    """Chunk `files` and send the chunks the store lacks (files the state cache knows are read
    only when the store lacks some of their chunks), then those of the tree's manifest; nothing
    when the state cache shows the tree to be `head_digest`'s."""
    progress.phase("chunking and sending files", len(files), unit="files")
    uploader = _Uploader(client, project, cache, root)
    return uploader.run(files, progress, head_digest)


class _Uploader:
    """Reads and cuts files on the calling thread while two more threads ask which chunks are
    missing and send them, one durable batch per UploadChunks call.

    Files the state cache knows are not read, unless the store lacks some of their chunks (asked
    in one FindMissingChunks call per 50,000 digests before reading starts): those are read with
    the others and must still hash as the cache says. The cache is consulted only when a sample of
    the files shows it can spare reading (see `_cache_helps`)."""

    def __init__(self, client: DataClient, project: str, cache: StateCache | None = None, root: str = "") -> None:
        self.client = client
        self.project = project
        self.cache = cache
        self.sent_chunks = 0
        self.sent_bytes = 0
        self.learned: list[tuple[str, Stamp, ChunkedFile]] = []
        self._root = root
        self._known: dict[str, tuple[Stamp, bytes]] = {}
        # Whether the sample showed the tree as the state cache remembers it (then what is read is
        # not remembered again).
        self._as_remembered = False
        # Digests the store lacked when asked before reading: a batch of only these is sent without
        # asking again (one stored meanwhile by another push is skipped by the service).
        self._lacking: set[bytes] = set()
        self._entries: list[bytes | None] = []
        self._lock = threading.Lock()

    def run(self, files: list[LocalFile], progress: Progress, head_digest: str = "") -> UploadedTree:
        """Upload what the store lacks of `files` and of their manifest. When every file is known
        from the state cache and the tree is the head version's (`head_digest`), nothing is asked
        of the store: a version holds every chunk it references."""
        chunked: list[ChunkedFile | None] = [None] * len(files)
        # Each file's manifest record, written as it is read (while the readers read ahead).
        self._entries = [None] * len(files)
        expected: dict[int, ChunkedFile] = {}
        if self.cache is not None and self._cache_helps(files):
            self._known = self.cache.lookup(self._root)
        if self._known:
            chunked = self._cached(files)
            if head_digest and all(cut is not None for cut in chunked):
                unchanged = self._tree(files, chunked)
                if unchanged.digest == head_digest:
                    progress.advance(len(files))
                    return unchanged
            expected = self._missing_of_cached(chunked)
        progress.advance(len(files) - sum(1 for cut in chunked if cut is None) - len(expected))
        batches: queue.Queue[_Batch | None] = queue.Queue(maxsize=SENDERS + 1)
        failure: list[BaseException] = []
        # Each sender runs in a copy of this context, so its calls continue the caller's trace (and carry
        # the caller's credentials inside a service).
        senders = [
            threading.Thread(
                target=contextvars.copy_context().run, args=(self._send_loop, batches, failure), daemon=True
            )
            for _ in range(SENDERS)
        ]
        for sender in senders:
            sender.start()
        try:
            self._read_and_queue(files, chunked, expected, batches, failure, progress)
            if not failure:
                # The manifest is encoded, and its chunks queued, while the last batches are sent.
                tree = self._tree(files, chunked)
                raw, cut = tree.manifest, tree.manifest_cut
                batches.put(_Batch.of([(c.digest, raw[c.offset : c.offset + c.length]) for c in cut.chunks]))
        finally:
            for _ in senders:
                batches.put(None)
            for sender in senders:
                sender.join()
        if failure:
            raise failure[0]
        return tree

    def _tree(self, files: list[LocalFile], chunked: list[ChunkedFile | None]) -> UploadedTree:
        """The tree of `files` with their chunkings (every one known by now) and its manifest."""
        cuts: list[ChunkedFile] = chunked  # type: ignore[assignment]
        entries = self._entries if len(self._entries) == len(files) else [None] * len(files)
        raw = b"".join(
            entry or encode_entry(local.path, media_type(local.path), cut)
            for local, cut, entry in zip(files, cuts, entries, strict=True)
        )
        return UploadedTree(raw, chunk_bytes(raw), len(files), sum(c.size for c in cuts), self)

    def _read_and_queue(
        self,
        files: list[LocalFile],
        chunked: list[ChunkedFile | None],
        expected: dict[int, ChunkedFile],
        batches: queue.Queue[_Batch | None],
        failure: list[BaseException],
        progress: Progress,
    ) -> None:
        """Read every file not known yet (and those `expected` to hash as the cache says), queueing
        their chunks in batches of about BATCH_BYTES."""
        stamped = self.cache is not None and not self._as_remembered
        wanted = [index for index in range(len(files)) if chunked[index] is None or index in expected]
        with closing(read_files([files[i].absolute for i in wanted], stamped)) as reads:
            done = self._queue_reads(files, wanted, reads, chunked, expected, batches, failure, progress)
        progress.advance(done % 256)

    def _queue_reads(
        self,
        files: list[LocalFile],
        wanted: list[int],
        reads: Iterator[Read],
        chunked: list[ChunkedFile | None],
        expected: dict[int, ChunkedFile],
        batches: queue.Queue[_Batch | None],
        failure: list[BaseException],
        progress: Progress,
    ) -> int:
        batch = _Batch()
        seen: set[bytes] = set()
        entries = self._entries
        done = 0
        for index, (cut, data, stamp) in zip(wanted, reads, strict=True):
            if failure:
                return done
            local = files[index]
            cached = expected.get(index)
            if cached is not None and cut.digest != cached.digest:
                raise FailedPrecondition(f"{local.path} changed during the push; push again")
            chunked[index] = cut
            entries[index] = encode_entry(local.path, media_type(local.path), cut)
            if stamp is not None and cached is None:
                self.learned.append((local.absolute, stamp, cut))
            for span in cut.chunks:
                if span.digest in seen:
                    continue
                seen.add(span.digest)
                whole = span.length == cut.size
                batch.add(span.digest, data if whole else data[span.offset : span.offset + span.length])
            if batch.size >= BATCH_BYTES:
                batches.put(batch)
                batch = _Batch()
            done += 1
            if done % 256 == 0:
                progress.advance(256)
        if batch.digests and not failure:
            batches.put(batch)
        return done

    def _cache_helps(self, files: list[LocalFile]) -> bool:
        """Whether the state cache can spare reading files, judged on up to PROBE_FILES of them spread
        over the tree: some must be unchanged since the cache saw them, and the store must hold at
        least half of their chunks. Otherwise (files new or changed, or a store that lacks what the
        cache knows, such as a fresh one) every file is read anyway, and looking up, stat-ing and
        checking the whole tree against the cache first would only add to the push (for 100,000
        files, about 0.6 s before the first read). When every sampled file is as the cache remembers
        it, the tree is taken as remembered already: reading it again does not rewrite its 100,000
        rows (a file changed meanwhile is just read again by the next push)."""
        cache = self.cache
        if cache is None or not self._root or not files:
            return False
        sample = files[:: max(1, len(files) // PROBE_FILES)][:PROBE_FILES]
        known = cache.entries([local.absolute for local in sample])
        digests: list[bytes] = []
        valid = 0
        for local in sample:
            entry = known.get(local.absolute)
            if entry is None:
                continue
            try:
                stamp = stamp_of(os.stat(local.absolute))
            except OSError:
                continue
            if entry[0] == stamp and cache.trusted(stamp):
                digests.extend(span.digest for span in decode(entry[1], stamp[0]).chunks)
                valid += 1
        if not digests:
            return False
        unique = list(dict.fromkeys(digests))
        if 2 * len(self.client.find_missing(self.project, unique)) <= len(unique):
            return True
        self._as_remembered = valid == len(sample)
        return False

    def _missing_of_cached(self, chunked: list[ChunkedFile | None]) -> dict[int, ChunkedFile]:
        """The files known from the state cache (by index) with chunks the store lacks, which must
        be read and sent after all."""
        digests = list(dict.fromkeys(s.digest for cut in chunked if cut is not None for s in cut.chunks))
        missing: set[bytes] = set()
        for start in range(0, len(digests), 50_000):
            missing.update(self.client.find_missing(self.project, digests[start : start + 50_000]))
        if not missing:
            return {}
        self._lacking = missing
        return {
            index: cut
            for index, cut in enumerate(chunked)
            if cut is not None and any(s.digest in missing for s in cut.chunks)
        }

    def _cached(self, files: list[LocalFile]) -> list[ChunkedFile | None]:
        """The remembered chunking of each file that is unchanged since, if the state cache has it
        (one loop over the files: a stat each, for 100,000 of them)."""
        known, cache = self._known, self.cache
        found: list[ChunkedFile | None] = [None] * len(files)
        if cache is None:
            return found
        stat = os.stat
        for index, local in enumerate(files):
            entry = known.get(local.absolute)
            if entry is None:
                continue
            try:
                stamp = stamp_of(stat(local.absolute))
            except OSError:
                continue
            if entry[0] == stamp and cache.trusted(stamp):
                found[index] = decode(entry[1], stamp[0])
        return found

    def _send_loop(self, batches: queue.Queue[_Batch | None], failure: list[BaseException]) -> None:
        while (batch := batches.get()) is not None:
            if not failure:
                try:
                    self._send(batch)
                except BaseException as error:  # noqa: BLE001 - handed to the pushing thread
                    failure.append(error)
            # Not kept while waiting for the next batch: its bytes' memory is reused by the reading.
            del batch

    def _send(self, batch: _Batch) -> None:
        lacking = self._lacking
        if lacking and lacking.issuperset(batch.digests):
            missing = batch.digests
        else:
            missing = self.client.find_missing(self.project, batch.digests)
        if len(missing) < len(batch.digests):
            wanted = set(missing)
            batch = _Batch.of([(d, data) for d, data in zip(batch.digests, batch.datas, strict=True) if d in wanted])
        if not batch.digests:
            return
        self.client.upload(self.project, batch.messages())
        with self._lock:
            self.sent_chunks += len(batch.digests)
            self.sent_bytes += batch.size


class _Batch:
    """Chunks to send in one UploadChunks call, in columns."""

    def __init__(self) -> None:
        self.digests: list[bytes] = []
        self.datas: list[bytes | memoryview] = []
        self.size = 0

    @classmethod
    def of(cls, pieces: list[Piece]) -> _Batch:
        batch = cls()
        for digest, data in pieces:
            batch.add(digest, data)
        return batch

    def add(self, digest: bytes, data: bytes | memoryview) -> None:
        self.digests.append(digest)
        self.datas.append(data)
        self.size += len(data)

    def messages(self) -> Iterator[list[Piece]]:
        """The chunks cut into messages of about MESSAGE_BYTES each."""
        ends = list(accumulate(len(data) for data in self.datas))
        start = 0
        while start < len(ends):
            stop = bisect_left(ends, (ends[start - 1] if start else 0) + MESSAGE_BYTES, lo=start) + 1
            yield list(zip(self.digests[start:stop], self.datas[start:stop], strict=True))
            # The message is serialized by now: its chunks' bytes are let go, for the reading to reuse.
            self.datas[start:stop] = [b""] * (stop - start)
            start = stop
