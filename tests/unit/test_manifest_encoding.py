"""The push's hand-written manifest bytes are exactly protobuf's deterministic serialization."""

from __future__ import annotations

import os

from atelier.chunking import chunk_bytes
from atelier.data.v1 import resources_pb2 as pb
from atelier.datasets.manifest import encode_manifest


def _reference(paths: list[str], media: list[str], datas: list[bytes]) -> bytes:
    manifest = pb.Manifest()
    for path, media_type, data in zip(paths, media, datas, strict=True):
        cut = chunk_bytes(data)
        manifest.files.add(
            path=path,
            size_bytes=cut.size,
            digest=cut.digest,
            media_type=media_type,
            chunks=[pb.ChunkRef(digest=c.digest, size_bytes=c.length) for c in cut.chunks],
        )
    return manifest.SerializeToString(deterministic=True)


def test_encoding_matches_protobuf() -> None:
    # One chunk (sizes with one- and two-byte varints, up to MIN_CHUNK), several, none.
    datas = [b"", b"x", os.urandom(127), os.urandom(128), os.urandom(4096), os.urandom(16 * 1024)]
    datas += [os.urandom(200_000), os.urandom(3 * 1024 * 1024), os.urandom(9)]
    paths = ["empty", "one", "a/127", "a/128", "d/small.bin", "d/min", "d/\u00e9t\u00e9/mid.png"]
    paths += ["z/" + "long" * 300 + ".bin", "z/" + "x" * 200]
    media = ["", "text/plain", "", "application/octet-stream", "", "image/png" * 20, "image/png"]
    media += ["application/octet-stream", "text/plain"]
    # The largest small-file records: the largest size with a two-byte varint, long paths of
    # multi-byte characters (a record of over 8,000 bytes), and a path too long for the fast path.
    datas += [os.urandom(16 * 1024 - 1), os.urandom(5), os.urandom(6)]
    paths += ["\U0001f600" * 2047, "\u00e9" * 2047, "p" * 2048]
    media += ["text/plain" * 100, "", ""]
    encoded = encode_manifest(paths, media, [chunk_bytes(d) for d in datas])
    assert encoded == _reference(paths, media, datas)
    assert [f.path for f in pb.Manifest.FromString(encoded).files] == paths


def test_a_record_says_what_its_chunking_says_even_when_sizes_disagree() -> None:
    # A chunking remembered wrongly (a file size that is not its one chunk's) is written as it is, so
    # that the service refuses it rather than a record hiding the disagreement.
    cut = chunk_bytes(b"x" * 300)
    wrong = cut._replace(size=299)
    manifest = pb.Manifest.FromString(encode_manifest(["f"], [""], [wrong]))
    assert manifest.files[0].size_bytes == 299
    assert manifest.files[0].chunks[0].size_bytes == 300


def test_empty_manifest() -> None:
    assert encode_manifest([], [], []) == b""
