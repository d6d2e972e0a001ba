"""Client-streaming RPCs over HTTP: the request body is read as a stream of request messages.

Two framings, chosen by `Content-Type`:

- `application/x-ndjson` (or `application/json`, the default): one request message a line in protobuf's
  JSON mapping, shaped like a unary request's body (`body: "*"`: the whole message); bytes fields are
  base64, so this suits small chunks;
- `application/x-protobuf`: request messages in protobuf's binary form, each preceded by its length
  as a varint (`writeDelimitedTo`/`parseDelimitedFrom` framing), which is what a real uploader sends.

Path variables and query parameters apply to every message; an empty body sends one message of them
alone (so `POST /v1/projects/nowhere/chunks:upload` with no body is a 404, as a unary call would be).
Messages are forwarded to the service as they arrive, each write waiting for the service's flow
control, so the gateway holds about one frame at a time. A malformed frame is a 400 naming where it
is (the service call is cancelled); a client that disconnects cancels the service call. The service's
answer is the response, as for a unary RPC.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping

from google.protobuf.message import DecodeError, Message

from atelier.client.channel import MAX_MESSAGE_BYTES
from atelier.errors import InvalidArgument
from gateway.descriptors import HttpBinding
from gateway.transcode import build_request, set_path_field

NDJSON = "application/x-ndjson"
PROTOBUF = "application/x-protobuf"
FRAMINGS = (NDJSON, "application/json", PROTOBUF)


def framing_of(content_type: str) -> str:
    """The framing a `Content-Type` asks for; `InvalidArgument` naming the allowed ones otherwise."""
    media = content_type.split(";", 1)[0].strip().lower()
    if not media or media in (NDJSON, "application/json"):
        return NDJSON
    if media == PROTOBUF:
        return PROTOBUF
    raise InvalidArgument(
        f"Content-Type {content_type!r} is not a framing of a client stream; allowed: {', '.join(FRAMINGS)}"
    )


def request_messages(
    binding: HttpBinding,
    path_values: Mapping[str, str],
    query: list[tuple[str, str]],
    content_type: str,
    body: AsyncIterator[bytes],
) -> AsyncIterator[Message]:
    """The request messages of a streamed body, one at a time (raises `InvalidArgument` at a bad frame).
    An empty body is one message of the path's (and query's) fields alone, as for a unary request."""
    if framing_of(content_type) == PROTOBUF:
        messages = _binary(binding, path_values, query, body)
    else:
        messages = _lines(lambda line: build_request(binding, path_values, query, line), body)
    return _at_least_one(messages, lambda: build_request(binding, path_values, query, b""))


async def _at_least_one(messages: AsyncIterator[Message], empty: Callable[[], Message]) -> AsyncIterator[Message]:
    sent = False
    async for message in messages:
        sent = True
        yield message
    if not sent:
        yield empty()


async def _lines(parse: Callable[[bytes], Message], body: AsyncIterator[bytes]) -> AsyncIterator[Message]:
    pending = bytearray()
    number = 0
    async for piece in body:
        pending += piece
        while (end := pending.find(b"\n")) >= 0:
            line = bytes(pending[:end])
            del pending[: end + 1]
            number += 1
            if line.strip():
                yield _parsed_line(parse, line, number)
        if len(pending) > MAX_MESSAGE_BYTES:
            raise InvalidArgument(f"line {number + 1} of the request body is longer than {MAX_MESSAGE_BYTES} bytes")
    if pending.strip():
        yield _parsed_line(parse, bytes(pending), number + 1)


def _parsed_line(parse: Callable[[bytes], Message], line: bytes, number: int) -> Message:
    try:
        return parse(line)
    except InvalidArgument as error:
        raise InvalidArgument(f"line {number} of the request body: {error.message}", metadata=error.metadata) from None


async def _binary(
    binding: HttpBinding, path_values: Mapping[str, str], query: list[tuple[str, str]], body: AsyncIterator[bytes]
) -> AsyncIterator[Message]:
    template = build_request(binding, path_values, query, b"")
    pending = bytearray()
    number = 0
    async for piece in body:
        pending += piece
        while (frame := _frame(pending, number + 1)) is not None:
            number += 1
            yield _decoded(binding, template, path_values, frame, number)
    if pending:
        raise InvalidArgument(
            f"the request body ends inside frame {number + 1} ({len(pending)} bytes left over); each message "
            "must be preceded by its length as a varint"
        )


def _frame(pending: bytearray, number: int) -> bytes | None:
    """Take one length-delimited frame off the front of `pending`, or None when it is not all there yet."""
    length = shift = position = 0
    while True:
        if position >= len(pending):
            return None
        byte = pending[position]
        length |= (byte & 0x7F) << shift
        position += 1
        if not byte & 0x80:
            break
        shift += 7
        if shift > 63:
            raise InvalidArgument(f"frame {number} of the request body starts with an invalid varint length")
    if length > MAX_MESSAGE_BYTES:
        raise InvalidArgument(f"frame {number} of the request body is {length} bytes; at most {MAX_MESSAGE_BYTES}")
    if len(pending) - position < length:
        return None
    frame = bytes(pending[position : position + length])
    del pending[: position + length]
    return frame


def _decoded(
    binding: HttpBinding, template: Message, path_values: Mapping[str, str], frame: bytes, number: int
) -> Message:
    message = binding.request_class()()
    try:
        message.ParseFromString(frame)
    except DecodeError as error:
        raise InvalidArgument(
            f"frame {number} of the request body is not a {binding.method.input_type.full_name}: {error}"
        ) from None
    message.MergeFrom(template)
    for field_path, value in path_values.items():
        set_path_field(message, field_path, value)
    return message
