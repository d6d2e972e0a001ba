"""The data service reads UploadChunks requests without copying the pack's bytes, and reads them
as protobuf does, whatever their shape."""

from __future__ import annotations

import os

import pytest
from google.protobuf.message import DecodeError

from atelier.chunking import digest
from atelier.client.data import _varint, packed_upload_request
from atelier.data.v1 import data_service_pb2 as rpc
from services.data.uploads import parse_upload


def _pack(*datas: bytes) -> rpc.ChunkPack:
    return rpc.ChunkPack(digests=[digest(d) for d in datas], sizes=[len(d) for d in datas], data=b"".join(datas))


def _as_protobuf_reads(raw: bytes) -> tuple[str, list[tuple[bytes, bytes]], bool, list[bytes], list[int], bytes]:
    request = rpc.UploadChunksRequest.FromString(raw)
    pack = request.pack
    chunks = [(c.digest, c.data) for c in request.chunks]
    return request.parent, chunks, request.HasField("pack"), list(pack.digests), list(pack.sizes), pack.data


def _as_parsed(raw: bytes) -> tuple[str, list[tuple[bytes, bytes]], bool, list[bytes], list[int], bytes]:
    got = parse_upload(raw)
    chunks = [(c.digest, c.data) for c in got.chunks]
    return got.parent, chunks, got.has_pack, got.digests, got.sizes, bytes(got.data)


def _wrapped(pack: bytes) -> bytes:
    """A request whose pack field holds `pack` as given (protobuf would normalize it)."""
    return b"\x1a" + _varint(len(pack)) + pack


a, b, c = os.urandom(5000), os.urandom(1), os.urandom(300)
CASES = {
    "pack": rpc.UploadChunksRequest(parent="projects/lab", pack=_pack(a, b, c)).SerializeToString(),
    "no-parent": rpc.UploadChunksRequest(pack=_pack(a)).SerializeToString(),
    "empty-pack": rpc.UploadChunksRequest(parent="projects/lab", pack=rpc.ChunkPack()).SerializeToString(),
    "no-pack": rpc.UploadChunksRequest(parent="projects/lab").SerializeToString(),
    "empty": b"",
    "chunks-and-pack": rpc.UploadChunksRequest(
        parent="projects/lab", chunks=[rpc.Chunk(digest=digest(c), data=c)], pack=_pack(a, b)
    ).SerializeToString(),
    # Fields out of order, a pack given twice (protobuf merges them), a data field twice (the last wins).
    "data-first": rpc.UploadChunksRequest(pack=rpc.ChunkPack(data=a)).SerializeToString()
    + rpc.UploadChunksRequest(parent="projects/lab").SerializeToString(),
    "pack-twice": rpc.UploadChunksRequest(pack=_pack(a)).SerializeToString()
    + rpc.UploadChunksRequest(pack=_pack(b, c)).SerializeToString(),
    "data-twice": _wrapped(rpc.ChunkPack(data=a).SerializeToString() + _pack(c).SerializeToString()),
    "parent-twice": rpc.UploadChunksRequest(parent="projects/one").SerializeToString()
    + rpc.UploadChunksRequest(parent="projects/two", pack=_pack(a)).SerializeToString(),
    # An unknown varint field (number 9) and an unknown fixed64 field (number 10) inside and outside the pack.
    "unknown-fields": b"\x48\x96\x01"
    + rpc.UploadChunksRequest(parent="projects/lab", pack=_pack(a)).SerializeToString()
    + b"\x51"
    + bytes(8),
    "hand-built": packed_upload_request(
        rpc.UploadChunksRequest(parent="projects/lab").SerializeToString(), [(digest(a), a), (digest(c), c)]
    ),
}


@pytest.mark.parametrize("raw", CASES.values(), ids=CASES.keys())
def test_reads_what_protobuf_reads(raw: bytes) -> None:
    assert _as_parsed(raw) == _as_protobuf_reads(raw)


def test_the_pack_data_is_a_view_of_the_message() -> None:
    got = parse_upload(CASES["pack"])

    assert isinstance(got.data, memoryview)
    assert got.data.obj is CASES["pack"]


@pytest.mark.parametrize("cut", [1, 3, 40, -1], ids=["key-only", "in-parent", "in-pack", "last-byte"])
def test_truncated_messages_fail_as_protobuf_fails(cut: int) -> None:
    raw = CASES["pack"][:cut]
    with pytest.raises(DecodeError):
        rpc.UploadChunksRequest.FromString(raw)

    with pytest.raises(DecodeError):
        parse_upload(raw)
