"""The bytes of the data service: chunk upload and download, manifests, file reads."""

from __future__ import annotations

import functools
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from threading import Lock

from google.protobuf.message import DecodeError

from atelier.chunking import ChunkedFile, chunk_bytes
from atelier.data.v1 import resources_pb2 as pb
from atelier.errors import DataLoss, FailedPrecondition, InvalidArgument, NotFound
from atelier.runtime.objectstore import ObjectStore
from services.data.packs import ChunkReader, PackWriter
from services.data.store import DataStore

# A file is read a window of chunks at a time: bounded memory, few object reads.
_READ_WINDOW = 64


@dataclass(frozen=True)
class LoadedManifest:
    """A decoded manifest with its sorted paths, for bisection."""

    manifest: pb.Manifest
    paths: list[str]

    def entry(self, path: str) -> pb.FileEntry | None:
        from bisect import bisect_left

        index = bisect_left(self.paths, path)
        if index < len(self.paths) and self.paths[index] == path:
            return self.manifest.files[index]
        return None

    @functools.cached_property
    def chunk_digests(self) -> frozenset[bytes]:
        """Every chunk the files reference (built once per loaded manifest)."""
        return frozenset(chunk.digest for entry in self.manifest.files for chunk in entry.chunks)

    def containing(self, digest: bytes) -> str:
        """Path of a file holding the chunk (for error messages)."""
        for entry in self.manifest.files:
            if any(c.digest == digest for c in entry.chunks):
                return entry.path
        return "<manifest>"


class Content:
    """Chunks, packs and manifests over one object store."""

    def __init__(self, objects: ObjectStore, store: DataStore, pack_target: int, cache_entries: int) -> None:
        self.objects = objects
        self._store = store
        self._pack_target = pack_target
        self.reader = ChunkReader(objects, store)
        self._cache: OrderedDict[str, LoadedManifest] = OrderedDict()
        self._cache_entries = cache_entries
        self._lock = Lock()
        # Packs are written (two at a time: most of it is waiting for the disk) and then indexed
        # while uploads go on receiving; indexing has one thread, so that packs reach the database
        # one at a time, and it overlaps the writing of the next packs.
        self._objects_out = ThreadPoolExecutor(max_workers=2, thread_name_prefix="atelier-pack-writer")
        self._indexer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="atelier-pack-indexer")

    def close(self) -> None:
        """Finish the pack writes under way."""
        self._indexer.shutdown(wait=True)
        self._objects_out.shutdown(wait=True)

    def writer(self) -> PackWriter:
        return PackWriter(self.objects, self._store, self._pack_target, self._objects_out, self._indexer)

    def missing(self, digests: Sequence[bytes], grace_seconds: float) -> list[bytes]:
        """The digests not stored; the stored ones are touched so GC spares them for a while."""
        import time

        for d in digests:
            if len(d) != 32:
                raise InvalidArgument(
                    f"digest of {len(d)} bytes: chunk digests are 32-byte BLAKE3", metadata={"field": "digests"}
                )
        with self._store.session() as session:
            present = self._store.find_and_touch(session, digests, time.time() - grace_seconds / 2)
        return [d for d in digests if d not in present]

    def manifest_bytes(self, digests: Sequence[bytes], sizes: Sequence[int]) -> bytes:
        """Reassemble a serialized manifest from its chunks."""

        def missing(digest: bytes) -> DataLoss:
            return DataLoss(f"manifest chunk {digest.hex()} is missing or corrupted")

        wanted = list(digests)
        got = dict(self.reader.read(wanted, missing))
        return b"".join(got[d] for d in wanted)

    def load_manifest(self, digest: str, chunk_digests: bytes, sizes: Sequence[int], label: str) -> LoadedManifest:
        """Decode a version's manifest (cached: manifests never change)."""
        with self._lock:
            cached = self._cache.get(digest)
            if cached is not None:
                self._cache.move_to_end(digest)
                return cached
        digests = [chunk_digests[i : i + 32] for i in range(0, len(chunk_digests), 32)]
        try:
            raw = self.manifest_bytes(digests, sizes)
        except DataLoss as error:
            raise DataLoss(f"manifest of {label} is corrupted: {error}") from error
        manifest = pb.Manifest.FromString(raw)
        loaded = LoadedManifest(manifest, [f.path for f in manifest.files])
        with self._lock:
            self._cache[digest] = loaded
            while len(self._cache) > self._cache_entries:
                self._cache.popitem(last=False)
        return loaded

    def parse_uploaded_manifest(self, chunks: Sequence[pb.ChunkRef], digest: str) -> pb.Manifest:
        """Read back a manifest the client uploaded and check it hashes to `digest`."""
        digests = [c.digest for c in chunks]
        with self._store.session() as session:
            present = self._store.present_chunks(session, digests)
        absent = [d for d in digests if d not in present]
        if absent:
            raise FailedPrecondition(
                f"{len(absent)} manifest chunk(s) not uploaded (first: {absent[0].hex()}); upload them first",
                metadata={"missing": str(len(absent))},
            )
        raw = self.manifest_bytes(digests, [c.size_bytes for c in chunks])
        from atelier.chunking import digest as blake

        if blake(raw).hex() != digest:
            raise InvalidArgument(
                f"manifest_digest {digest!r} does not match the uploaded manifest, which hashes to {blake(raw).hex()}",
                metadata={"field": "manifest_digest"},
            )
        try:
            return pb.Manifest.FromString(raw)
        except DecodeError as error:
            raise InvalidArgument(f"uploaded manifest is not a valid Manifest message: {error}") from error

    def store_manifest(self, manifest: pb.Manifest) -> tuple[str, ChunkedFile]:
        """Serialize and store a manifest the service built itself (e.g. by a rebase)."""
        raw = manifest.SerializeToString(deterministic=True)
        chunked = chunk_bytes(raw)
        writer = self.writer()
        writer.add_many([(s.digest, raw[s.offset : s.offset + s.length]) for s in chunked.chunks])
        writer.flush()
        return chunked.digest, chunked

    def read_range(
        self, entry: pb.FileEntry, offset: int, length: int, corrupted: Callable[[bytes], DataLoss]
    ) -> Iterator[bytes]:
        """Yield the bytes `[offset, offset+length)` of a file, verified chunk by chunk."""
        if offset < 0 or length < 0:
            raise InvalidArgument(f"offset and length must be >= 0, got {offset} and {length}")
        if offset > entry.size_bytes:
            raise InvalidArgument(
                f"offset {offset} is past the end of {entry.path!r} ({entry.size_bytes} bytes)",
                metadata={"field": "offset"},
            )
        end = entry.size_bytes if length == 0 else min(entry.size_bytes, offset + length)
        spans: list[tuple[pb.ChunkRef, int]] = []
        position = 0
        for chunk in entry.chunks:
            if position + chunk.size_bytes > offset and position < end:
                spans.append((chunk, position))
            position += chunk.size_bytes
        for start in range(0, len(spans), _READ_WINDOW):
            window = spans[start : start + _READ_WINDOW]
            got = dict(self.reader.read([c.digest for c, _ in window], corrupted))
            for chunk, position in window:
                data = got[chunk.digest]
                lo = max(0, offset - position)
                hi = min(chunk.size_bytes, end - position)
                yield data[lo:hi]


def not_found_file(path: str, label: str) -> NotFound:
    return NotFound(f"no file {path!r} in {label}", metadata={"resource": label, "path": path})
