"""The push's hand-serialized UploadChunks requests are exactly protobuf's serialization."""

from __future__ import annotations

import os

import pytest

from atelier.chunking import digest
from atelier.client.data import packed_upload_request
from atelier.data.v1 import data_service_pb2 as rpc


def _reference(parent: str, datas: list[bytes]) -> bytes:
    pack = rpc.ChunkPack(digests=[digest(d) for d in datas], sizes=[len(d) for d in datas], data=b"".join(datas))
    return rpc.UploadChunksRequest(parent=parent, pack=pack).SerializeToString(deterministic=True)


@pytest.mark.parametrize(
    "sizes",
    [[], [1], [4096] * 3, [127, 128, 16383, 16384], [200_000, 3 * 1024 * 1024]],
    ids=["empty", "one-byte", "small", "varint-edges", "large"],
)
def test_request_matches_protobuf(sizes: list[int]) -> None:
    datas = [os.urandom(n) for n in sizes]
    head = rpc.UploadChunksRequest(parent="projects/lab").SerializeToString()
    chunks = [(digest(d), memoryview(d) if i % 2 else d) for i, d in enumerate(datas)]

    encoded = packed_upload_request(head, chunks)

    assert encoded == _reference("projects/lab", datas)
    parsed = rpc.UploadChunksRequest.FromString(encoded)
    assert parsed.parent == "projects/lab"
    assert parsed.pack.data == b"".join(datas)
    assert list(parsed.pack.sizes) == sizes
