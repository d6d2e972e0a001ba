"""UploadChunks requests read without copying their chunks' bytes.

A push of 400 MB arrives as about a hundred 4 MiB messages. Parsed by protobuf, each message's pack
data is copied out of the received buffer into the message, and again when the field is read: most
of the service's time in the call was these copies (and the page faults of the fresh buffers). Here
the pack's `data` stays a view into the received bytes; everything else in the message (the parent,
unpacked `chunks`, the pack's digests and sizes, unknown fields) is parsed by protobuf as usual. A
message whose shape is unusual (a pack given twice, a data field given twice, groups) is parsed
by protobuf whole, so the result always means what protobuf says it means.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

import grpc

from atelier.data.v1 import data_service_pb2 as rpc
from atelier.data.v1 import data_service_pb2_grpc

SERVICE = "atelier.data.v1.DataService"
_LENGTH_DELIMITED = 2
# A run of ChunkPack.digests fields of 32 bytes each (key 0x0a, length 0x20): skipped in one match
# rather than one field at a time (a pack of 4 KiB chunks has a thousand of them).
_DIGEST_RUN = re.compile(rb"(?:\x0a\x20[\x00-\xff]{32})+")


@dataclass(frozen=True, slots=True)
class Upload:
    """One message of an UploadChunks stream: `parent` and `chunks` as in the request, and its pack
    (if any) as digests, sizes and data."""

    parent: str
    chunks: Sequence[rpc.Chunk]
    has_pack: bool
    digests: list[bytes]
    sizes: list[int]
    data: bytes | memoryview


class _Unusual(Exception):
    """The message is parsed by protobuf whole."""


def _varint(raw: bytes, at: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if at >= len(raw) or shift > 63:
            raise _Unusual
        byte = raw[at]
        at += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, at
        shift += 7


def _fields(raw: bytes, start: int, end: int) -> list[tuple[int, int, int, int, int]]:
    """`(field number, wire type, start of its key, start of its payload, end)` of each field in
    `raw[start:end]` (the payload of a length-delimited field starts after its length)."""
    found: list[tuple[int, int, int, int, int]] = []
    at = start
    while at < end:
        run = _DIGEST_RUN.match(raw, at, end)
        if run is not None:  # field 1, length-delimited, several times: one span is enough here
            found.append((1, _LENGTH_DELIMITED, at, at + 2, run.end()))
            at = run.end()
            continue
        key_at = at
        key, at = _varint(raw, at)
        number, wire = key >> 3, key & 7
        if wire == 0:
            _, at = _varint(raw, at)
            payload = at
        elif wire == 1:
            payload, at = at, at + 8
        elif wire == 5:
            payload, at = at, at + 4
        elif wire == _LENGTH_DELIMITED:
            length, payload = _varint(raw, at)
            at = payload + length
        else:  # groups
            raise _Unusual
        if at > end:
            raise _Unusual
        found.append((number, wire, key_at, payload, at))
    return found


def parse_upload(raw: bytes) -> Upload:
    """The UploadChunksRequest serialized in `raw`, its pack's data a view of `raw`."""
    try:
        return _parse_fast(raw)
    except _Unusual:
        pass
    request = rpc.UploadChunksRequest.FromString(raw)
    pack = request.pack
    return Upload(
        request.parent, request.chunks, request.HasField("pack"), list(pack.digests), list(pack.sizes), pack.data
    )


def _parse_fast(raw: bytes) -> Upload:
    top = _fields(raw, 0, len(raw))
    packs = [f for f in top if f[0] == 3]
    if len(packs) > 1 or any(wire != _LENGTH_DELIMITED for _, wire, *_ in packs):
        raise _Unusual
    rest = b"".join(raw[key_at:end] for number, _, key_at, _, end in top if number != 3)
    request = rpc.UploadChunksRequest.FromString(rest)
    if not packs:
        return Upload(request.parent, request.chunks, False, [], [], b"")
    _, _, _, start, end = packs[0]
    inner = _fields(raw, start, end)
    datas = [f for f in inner if f[0] == 3]
    if len(datas) > 1 or any(wire != _LENGTH_DELIMITED for _, wire, *_ in datas):
        raise _Unusual
    pack = rpc.ChunkPack.FromString(b"".join(raw[key_at:end] for number, _, key_at, _, end in inner if number != 3))
    data = memoryview(raw)[datas[0][3] : datas[0][4]] if datas else b""
    return Upload(request.parent, request.chunks, True, list(pack.digests), list(pack.sizes), data)


def register(servicer: data_service_pb2_grpc.DataServiceServicer, server: grpc.aio.Server) -> None:
    """Add the DataService's handlers to `server`, UploadChunks' requests read by `parse_upload`."""
    recorder = _Recorder()
    data_service_pb2_grpc.add_DataServiceServicer_to_server(servicer, cast(grpc.aio.Server, recorder))
    handlers = dict(recorder.handlers)
    upload = handlers["UploadChunks"]
    assert upload.stream_unary is not None
    handlers["UploadChunks"] = grpc.stream_unary_rpc_method_handler(
        upload.stream_unary, request_deserializer=parse_upload, response_serializer=upload.response_serializer
    )
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))
    server.add_registered_method_handlers(SERVICE, handlers)  # type: ignore[attr-defined]


class _Recorder:
    """Stands in for a server to receive the generated code's handlers."""

    handlers: dict[str, grpc.RpcMethodHandler[Any, Any]]

    def add_generic_rpc_handlers(self, handlers: Any) -> None:
        pass

    def add_registered_method_handlers(
        self, service: str, handlers: dict[str, grpc.RpcMethodHandler[Any, Any]]
    ) -> None:
        self.handlers = handlers
