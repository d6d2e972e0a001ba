"""File downloads: a server-streaming read RPC served as raw bytes, with HTTP Range.

An RPC qualifies when it streams messages with a `bytes data` field and its request has `int64 offset`
and `length` fields (the data service's `ReadFile`); its first message may give the whole size in
`file_size_bytes`. Such a route answers raw bytes (`application/octet-stream`) instead of NDJSON when
the client sends `Accept: application/octet-stream`, `?alt=media`, or a `Range` header. The first
message gives the whole size in `int64 file_size_bytes`, which makes `Content-Length`.

`Range: bytes=a-b`, `bytes=a-` and `bytes=-n` answer 206 with `Content-Range`; several ranges in one
header answer 206 as `multipart/byteranges` (RFC 9110 §14.6), each part read on its own (parsing,
coalescing and the cap on their number: `gateway.byteranges`); a header no range of which can be
satisfied answers 416 with `Content-Range: bytes */<size>`. The size is learned first with a one-byte
read; the bytes then stream chunk by chunk as the service sends them, never held whole.

Where the first message names the file's content (`string file_digest`), that digest is the strong
`ETag`: `If-None-Match` with it answers 304, and `If-Range` serves the range only while it still
names the same content (else the whole file, 200), so an interrupted download resumes safely. `HEAD`
answers the headers of the same `GET` (size, `Accept-Ranges`, `ETag`, the multipart body's length) from
the one-byte read alone.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import grpc
from google.protobuf import descriptor
from google.protobuf.message import Message
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from gateway.byteranges import Multipart, Unsatisfiable, parse_ranges
from gateway.descriptors import HttpBinding
from gateway.errors import error_body
from gateway.upstream import Upstreams

OCTET_STREAM = "application/octet-stream"
MULTIPART_BYTERANGES = "multipart/byteranges"
ALT_MEDIA = ("alt", "media")
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


async def download(
    binding: HttpBinding,
    message: Message,
    request: Request,
    upstreams: Upstreams,
    timeout: float,
    metadata: tuple[tuple[str, str], ...],
) -> Response:
    """The raw bytes of the read `message` asks for, or of the parts its `Range` header asks for (only
    the headers for `HEAD`).

    Raises `grpc.aio.AioRpcError` when the service refuses before the first byte."""
    read = _Read(binding, upstreams, timeout, metadata)
    header = request.headers.get("range", "")
    headers = {"Accept-Ranges": "bytes"}
    if not (header or request.method == "HEAD" or any(name in request.headers for name in _CONDITIONS)):
        return await read.whole(message, headers)
    size, digest = await read.size(message)
    etag = f'"{digest}"' if digest else ""
    if etag:
        headers["ETag"] = etag
        if _matches(request.headers.get("if-none-match", ""), etag):
            return Response(status_code=304, headers=headers)
    if_range = request.headers.get("if-range")
    if if_range is not None and (not etag or if_range.strip() != etag):
        header = ""  # the file changed since the client's part (or is not known): send it whole
    try:
        wanted = parse_ranges(header, size)
    except Unsatisfiable as error:
        refusal = error_body(grpc.StatusCode.OUT_OF_RANGE, str(error))
        refusal["error"]["code"] = 416
        return JSONResponse(refusal, status_code=416, headers={**headers, "Content-Range": f"bytes */{size}"})
    if wanted is not None and len(wanted) > 1:
        parts = Multipart(wanted, size, OCTET_STREAM)
        headers["Content-Length"] = str(parts.content_length)
        if request.method == "HEAD":
            return Response(status_code=206, headers=headers, media_type=parts.content_type)
        return StreamingResponse(read.parts(message, parts), 206, headers, media_type=parts.content_type)
    status = 200
    if wanted is not None:
        message.offset, message.length = wanted[0].start, wanted[0].length  # type: ignore[attr-defined]
        headers["Content-Range"] = wanted[0].content_range(size)
        status = 206
    if request.method == "HEAD":
        headers["Content-Length"] = str(_sent_bytes(message, size))
        return Response(status_code=status, headers=headers, media_type=OCTET_STREAM)
    return await read.whole(message, headers, status)


_CONDITIONS = ("if-none-match", "if-range")


@dataclass(frozen=True)
class _Read:
    """Reads of one file through the download RPC of `binding`."""

    binding: HttpBinding
    upstreams: Upstreams
    timeout: float
    metadata: tuple[tuple[str, str], ...]

    def call(self, message: Message) -> grpc.aio.UnaryStreamCall[Message, Message]:
        binding = self.binding
        return self.upstreams.server_stream(
            binding.service, binding.rpc_path, message, binding.response_class(), self.timeout, self.metadata
        )

    def at(self, message: Message, offset: int, length: int) -> Message:
        """A copy of the read `message` for `length` bytes from `offset`."""
        copy = type(message)()
        copy.CopyFrom(message)
        copy.offset, copy.length = offset, length  # type: ignore[attr-defined]
        return copy

    async def size(self, message: Message) -> tuple[int, str]:
        """The whole size of the file, and its digest where the service names it, from a one-byte read
        (its first message's `file_size_bytes` and `file_digest`)."""
        call = self.call(self.at(message, 0, 1))
        try:
            async for first in call:
                return int(getattr(first, "file_size_bytes", 0)), str(getattr(first, "file_digest", ""))
            return 0, ""
        finally:
            call.cancel()

    async def whole(self, message: Message, headers: dict[str, str], status: int = 200) -> Response:
        """The bytes `message` reads, streamed; its first message (awaited before the response starts, so
        a refusal keeps its status) gives `Content-Length` and `ETag`."""
        call = self.call(message)
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

    async def parts(self, message: Message, parts: Multipart) -> AsyncIterator[bytes]:
        """The `multipart/byteranges` body of `parts`: each part's head, then its bytes from a read of
        that range alone (one read at a time, streamed as the service sends them), then the closing
        delimiter."""
        for head, each in parts.heads():
            yield head
            call = self.call(self.at(message, each.start, each.length))
            try:
                async for chunk in call:
                    yield bytes(getattr(chunk, "data"))  # noqa: B009
            finally:
                call.cancel()
        yield parts.closing


def _sent_bytes(message: Message, size: int) -> int:
    """How many bytes of a `size`-byte file the read `message` (its offset and length) sends."""
    offset, length = getattr(message, "offset"), getattr(message, "length")  # noqa: B009
    return max(0, min(size - int(offset), int(length) or size))


def _matches(if_none_match: str, etag: str) -> bool:
    """Whether an `If-None-Match` list names `etag` (weak comparison, as RFC 9110 asks) or is `*`."""
    listed = [tag.strip().removeprefix("W/") for tag in if_none_match.split(",") if tag.strip()]
    return "*" in listed or etag in listed
