"""Server-streaming RPCs over HTTP: NDJSON by default, Server-Sent Events on `Accept: text/event-stream`.

Each message is `{"result": <message JSON>}` (NDJSON: one line; SSE: one `data:` event). An error after
the first message can no longer change the HTTP status, so it arrives as a last `{"error": ...}` line
(SSE: an `error` event) in the AIP-193 shape. The first message is awaited before the response starts,
so a call that fails at once gets its proper HTTP status.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc
from google.protobuf.message import Message
from starlette.responses import StreamingResponse

from gateway.errors import body_of_rpc_error

NDJSON = "application/x-ndjson"
EVENT_STREAM = "text/event-stream"


def wants_events(accept: str) -> bool:
    """Whether the client asked for Server-Sent Events."""
    return EVENT_STREAM in accept.lower()


def encode_ndjson(item: dict[str, Any], event: str) -> bytes:
    return json.dumps(item, separators=(",", ":")).encode() + b"\n"


def encode_event(item: dict[str, Any], event: str) -> bytes:
    head = f"event: {event}\n" if event != "message" else ""
    return f"{head}data: {json.dumps(item, separators=(',', ':'))}\n\n".encode()


async def stream_response(
    call: grpc.aio.UnaryStreamCall[Message, Message],
    to_json: Callable[[Message], Any],
    accept: str,
    headers: dict[str, str],
) -> StreamingResponse:
    """The HTTP response for a server-streaming call whose first message (or end) has arrived.

    Raises `grpc.aio.AioRpcError` when the call fails before its first message.
    """
    events = wants_events(accept)
    encode = encode_event if events else encode_ndjson
    iterator = call.__aiter__()
    first: Message | None
    try:
        first = await anext(iterator)
    except StopAsyncIteration:
        first = None

    async def body() -> AsyncIterator[bytes]:
        try:
            if first is not None:
                yield encode({"result": to_json(first)}, "message")
                async for message in iterator:
                    yield encode({"result": to_json(message)}, "message")
        except grpc.aio.AioRpcError as error:
            yield encode(body_of_rpc_error(error), "error")
        finally:
            call.cancel()

    media = EVENT_STREAM if events else NDJSON
    extra = {"Cache-Control": "no-cache"} if events else {}
    return StreamingResponse(body(), media_type=media, headers={**headers, **extra})
