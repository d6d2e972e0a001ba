from __future__ import annotations

from collections.abc import Callable

import pytest

from atelier.chunking import chunk_bytes
from atelier.data.v1 import resources_pb2 as pb
from atelier.errors import Aborted, InvalidArgument
from services.data.manifests import path_problem, rebase, validate


def entry(path: str, data: bytes) -> pb.FileEntry:
    cut = chunk_bytes(data)
    e = pb.FileEntry(path=path, size_bytes=cut.size, digest=cut.digest)
    e.chunks.extend(pb.ChunkRef(digest=c.digest, size_bytes=c.length) for c in cut.chunks)
    return e


def manifest(*files: pb.FileEntry) -> pb.Manifest:
    return pb.Manifest(files=list(files))


@pytest.mark.parametrize("bad", ["", "/abs", "a/../b", "..", "a//b", "./a", "a\\b", "a/"])
def test_bad_paths(bad: str) -> None:
    assert path_problem(bad)
    with pytest.raises(InvalidArgument, match="invalid file path"):
        validate(manifest(entry(bad, b"x")))


def test_duplicates_and_order() -> None:
    with pytest.raises(InvalidArgument, match="duplicate path 'a'"):
        validate(manifest(entry("a", b"1"), entry("a", b"2")))
    with pytest.raises(InvalidArgument, match="out of order"):
        validate(manifest(entry("b", b"1"), entry("a", b"2")))


def test_size_mismatch() -> None:
    e = entry("a", b"12345")
    e.size_bytes = 4
    with pytest.raises(InvalidArgument, match="says 4 bytes but its chunks add up to 5"):
        validate(manifest(e))


@pytest.mark.parametrize("data", [b"one chunk", b"x" * 300_000], ids=["one chunk", "several chunks"])
@pytest.mark.parametrize("spoil", ["short digest", "zero size", "negative size"])
def test_malformed_chunks_name_their_file(data: bytes, spoil: str) -> None:
    e = entry("b", data)
    chunk = e.chunks[-1]
    if spoil == "short digest":
        chunk.digest = chunk.digest[:31]
    else:
        e.size_bytes -= chunk.size_bytes
        chunk.size_bytes = 0 if spoil == "zero size" else -1
        e.size_bytes += chunk.size_bytes
    with pytest.raises(InvalidArgument, match="file 'b' has a malformed chunk"):
        validate(manifest(entry("a", b"fine"), e))


def test_rebase_applies_non_conflicting_changes() -> None:
    base = manifest(entry("a", b"1"), entry("b", b"1"))
    ours = manifest(entry("a", b"2"), entry("b", b"1"), entry("c", b"new"))
    theirs = manifest(entry("a", b"1"), entry("d", b"theirs"))
    merged = rebase(base, ours, theirs, "v2")
    assert [(f.path, f.size_bytes) for f in merged.files] == [("a", 1), ("c", 3), ("d", 6)]
    assert merged.files[0].digest == entry("a", b"2").digest


def test_rebase_conflict_names_paths() -> None:
    base = manifest(entry("a", b"1"))
    with pytest.raises(Aborted, match="both changed a"):
        rebase(base, manifest(entry("a", b"2")), manifest(entry("a", b"3")), "v2")


@pytest.mark.parametrize(
    "spoil", [str.upper, lambda d: d[:30] + " " + d[31:], lambda d: d[:-1] + "g", lambda d: d[:-1]]
)
def test_file_digests_must_be_64_lowercase_hex_characters(spoil: Callable[[str], str]) -> None:
    good = entry("a", b"1")
    bad = entry("b", b"2")
    bad.digest = spoil(bad.digest)
    assert validate(manifest(good, entry("c", b"3"))).total_size == 2
    with pytest.raises(InvalidArgument, match="file 'b' has digest"):
        validate(manifest(good, bad))
