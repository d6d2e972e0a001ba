"""File downloads: a server-streaming read RPC served as raw bytes, with HTTP Range.

An RPC qualifies when it streams messages with a `bytes data` field and its request has `int64 offset`
and `length` fields (the data service's `ReadFile`); its first message may give the whole size in
`file_size_bytes`. Such a route answers raw bytes (`application/octet-stream`) instead of NDJSON when
the client sends `Accept: application/octet-stream`, `?alt=media`, or a `Range` header. The first
message gives the whole size in `int64 file_size_bytes`, which makes `Content-Length`.

`Range: bytes=a-b`, `bytes=a-` and `bytes=-n` (one range) answer 206 with `Content-Range`; a range
that starts past the end answers 416 with `Content-Range: bytes */<size>`. Several ranges in one
header are served as the whole file (200), which RFC 9110 allows. The size is learned first with a
one-byte read; the bytes then stream chunk by chunk as the service sends them, never held whole.

Where the first message names the file's content (`string file_digest`), that digest is the strong
`ETag`: `If-None-Match` with it answers 304, and `If-Range` serves the range only while it still
names the same content (else the whole file, 200), so an interrupted download resumes safely. `HEAD`
answers the headers of the same `GET` (size, `Accept-Ranges`, `ETag`) from the one-byte read alone.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass

import grpc
from google.protobuf import descriptor
from google.protobuf.message import Message
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from gateway.descriptors import HttpBinding
from gateway.errors import error_body
from gateway.upstream import Upstreams

OCTET_STREAM = "application/octet-stream"
ALT_MEDIA = ("alt", "media")
_RANGE = re.compile(r"bytes=(\d*)-(\d*)")
FieldDescriptor = descriptor.FieldDescriptor


def is_download(binding: HttpBinding) -> bool:
    """Whether the RPC streams the bytes of a range of a file (see the module's docstring)."""
    out = binding.method.output_type.fields_by_name.get("data")
    request = binding.method.input_type.fields_by_name
    return (
        binding.method.server_streaming
        and not binding.method.client_streaming
        and out is not None
        and out.type == FieldDescriptor.TYPE_BYTES
        and all(name in request and request[name].type == FieldDescriptor.TYPE_INT64 for name in ("offset", "length"))
        and _int64(binding.method.output_type, "file_size_bytes")
    )


def _int64(message: descriptor.Descriptor, name: str) -> bool:
    field = message.fields_by_name.get(name)
    return field is not None and field.type == FieldDescriptor.TYPE_INT64


def wants_bytes(binding: HttpBinding, request: Request) -> bool:
    """Whether this request to a download RPC asks for raw bytes rather than NDJSON."""
    if not is_download(binding):
        return False
    asked = OCTET_STREAM in request.headers.get("accept", "").lower() or "range" in request.headers
    return asked or request.method == "HEAD" or ALT_MEDIA in request.query_params.multi_items()


@dataclass(frozen=True)
class ByteRange:
    start: int
    end: int
    """Inclusive, as in `Content-Range`."""


def parse_range(header: str, size: int) -> ByteRange | None:
    """The range a `Range` header asks for within `size` bytes; None for the whole file (no header, several
    ranges or a unit other than bytes); `Unsatisfiable` when it cannot be satisfied."""
    found = _RANGE.fullmatch(header.replace(" ", ""))
    if not header or found is None or (not found.group(1) and not found.group(2)):
        return None
    first, last = found.group(1), found.group(2)
    if not first:  # a suffix: the last n bytes
        length = int(last)
        if length == 0 or size == 0:
            raise _unsatisfiable(header, size)
        return ByteRange(max(0, size - length), size - 1)
    start = int(first)
    end = min(int(last), size - 1) if last else size - 1
    if start >= size or (last and int(last) < start):
        raise _unsatisfiable(header, size)
    return ByteRange(start, end)


class Unsatisfiable(Exception):
    """A `Range` no byte of the file satisfies (HTTP 416)."""


def _unsatisfiable(header: str, size: int) -> Unsatisfiable:
    return Unsatisfiable(
        f"Range {header!r} cannot be satisfied: the file has {size} bytes (a range starts at 0 to {size - 1})"
    )


async def download(
    binding: HttpBinding,
    message: Message,
    request: Request,
    upstreams: Upstreams,
    timeout: float,
    metadata: tuple[tuple[str, str], ...],
) -> Response:
    """The raw bytes of the read `message` asks for, or of the part its `Range` header asks for (only
    the headers for `HEAD`).

    Raises `grpc.aio.AioRpcError` when the service refuses before the first byte."""
    response_type = binding.response_class()
    head = request.method == "HEAD"
    header = request.headers.get("range", "")
    conditions = ("if-none-match", "if-range")
    status = 200
    headers = {"Accept-Ranges": "bytes"}
    if header or head or any(name in request.headers for name in conditions):
        probe = type(message)()
        probe.CopyFrom(message)
        probe.offset, probe.length = 0, 1  # type: ignore[attr-defined]
        size, digest = await _size(
            upstreams.server_stream(binding.service, binding.rpc_path, probe, response_type, timeout, metadata)
        )
        etag = f'"{digest}"' if digest else ""
        if etag:
            headers["ETag"] = etag
            if _matches(request.headers.get("if-none-match", ""), etag):
                return Response(status_code=304, headers=headers)
        if_range = request.headers.get("if-range")
        if if_range is not None and (not etag or if_range.strip() != etag):
            header = ""  # the file changed since the client's part (or is not known): send it whole
        try:
            wanted = parse_range(header, size)
        except Unsatisfiable as error:
            refusal = error_body(grpc.StatusCode.OUT_OF_RANGE, str(error))
            refusal["error"]["code"] = 416
            return JSONResponse(refusal, status_code=416, headers={**headers, "Content-Range": f"bytes */{size}"})
        if wanted is not None:
            message.offset, message.length = wanted.start, wanted.end - wanted.start + 1  # type: ignore[attr-defined]
            headers["Content-Range"] = f"bytes {wanted.start}-{wanted.end}/{size}"
            status = 206
        if head:
            headers["Content-Length"] = str(_sent_bytes(message, size))
            return Response(status_code=status, headers=headers, media_type=OCTET_STREAM)
    call = upstreams.server_stream(binding.service, binding.rpc_path, message, response_type, timeout, metadata)
    iterator = call.__aiter__()
    try:
        first: Message | None = await anext(iterator)
    except StopAsyncIteration:
        first = None
    total = getattr(first, "file_size_bytes", 0) if first is not None else 0
    digest = getattr(first, "file_digest", "") if first is not None else ""
    if digest:
        headers["ETag"] = f'"{digest}"'
    if total:
        headers["Content-Length"] = str(_sent_bytes(message, total))

    async def body() -> AsyncIterator[bytes]:
        try:
            if first is not None:
                yield bytes(getattr(first, "data"))  # noqa: B009
                async for each in iterator:
                    yield bytes(getattr(each, "data"))  # noqa: B009
        finally:
            call.cancel()

    return StreamingResponse(body(), status_code=status, media_type=OCTET_STREAM, headers=headers)


def _sent_bytes(message: Message, size: int) -> int:
    """How many bytes of a `size`-byte file the read `message` (its offset and length) sends."""
    offset, length = getattr(message, "offset"), getattr(message, "length")  # noqa: B009
    return max(0, min(size - int(offset), int(length) or size))


def _matches(if_none_match: str, etag: str) -> bool:
    """Whether an `If-None-Match` list names `etag` (weak comparison, as RFC 9110 asks) or is `*`."""
    listed = [tag.strip().removeprefix("W/") for tag in if_none_match.split(",") if tag.strip()]
    return "*" in listed or etag in listed


async def _size(call: grpc.aio.UnaryStreamCall[Message, Message]) -> tuple[int, str]:
    """The whole size of the file, and its digest where the service names it, from a one-byte read
    (its first message's `file_size_bytes` and `file_digest`)."""
    try:
        async for message in call:
            return int(getattr(message, "file_size_bytes", 0)), str(getattr(message, "file_digest", ""))
        return 0, ""
    finally:
        call.cancel()
