"""gRPC served from an ASGI application, on an HTTP/2 server that sends trailers (Envoy, through pyvoy).

grpc.aio spends more CPU on each call than the rest of a small inference request does; Envoy's
HTTP/2 in front of the same Python costs a third of it (docs/performance.md, "A cheaper gRPC front
end"). This module is the gRPC protocol over ASGI, as PROTOCOL-HTTP2.md in grpc/grpc defines it:
length-prefixed messages, `grpc-timeout` deadlines, metadata, the status in trailers with
`google.rpc.Status` details (Atelier's errors encoded as the error interceptor encodes them),
cancellation when the client goes away, unary and bidirectional streaming methods. What a method
does is its servicer's: the same handlers grpc.aio calls, given a `CallContext`.

Messages are not compressed here (`grpc-encoding` other than identity is UNIMPLEMENTED, as the
protocol prescribes); client-streaming and server-streaming methods are not served.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import time
import urllib.parse
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, NoReturn

import grpc
from google.protobuf import descriptor, message_factory

from atelier.errors import AtelierError, Internal, to_status

log = logging.getLogger(__name__)

Scope = Mapping[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
Metadata = tuple[tuple[str, str | bytes], ...]

DEFAULT_MAX_MESSAGE_BYTES = 64 * 1024 * 1024
_TIMEOUT_UNITS = {"H": 3600.0, "M": 60.0, "S": 1.0, "m": 1e-3, "u": 1e-6, "n": 1e-9}
# Request headers that are the protocol's, not the caller's metadata.
_PROTOCOL_HEADERS = frozenset(
    {"content-type", "te", "grpc-timeout", "grpc-encoding", "grpc-accept-encoding", "user-agent", "host"}
)
# grpc-message is percent-encoded: printable ASCII stays as it is, except '%'.
_MESSAGE_SAFE = "".join(chr(c) for c in range(0x20, 0x7F) if c != 0x25)
_START = {"type": "http.response.start", "status": 200, "trailers": True,
          "headers": [(b"content-type", b"application/grpc"), (b"grpc-accept-encoding", b"identity")]}  # fmt: skip
_OK = {"type": "http.response.trailers", "headers": [(b"grpc-status", b"0")], "more_trailers": False}


@dataclass(frozen=True)
class Method:
    """One method to serve: unary-unary, or bidirectional streaming."""

    kind: Literal["unary", "stream"]
    handler: Callable[[Any, CallContext], Any]
    parse: Callable[[bytes], Any]


def methods_of(servicer: object, service: descriptor.ServiceDescriptor) -> dict[str, Method]:
    """The servicer's handlers of `service`'s unary and bidirectional methods, by request path (those
    it does not define are left out, and so answered UNIMPLEMENTED)."""
    methods: dict[str, Method] = {}
    for method in service.methods:
        handler = getattr(servicer, method.name, None)
        if handler is None or method.client_streaming != method.server_streaming:
            continue  # one-sided streams are not served here
        request = message_factory.GetMessageClass(method.input_type)
        kind: Literal["unary", "stream"] = "stream" if method.client_streaming else "unary"
        methods[f"/{service.full_name}/{method.name}"] = Method(kind, handler, request.FromString)
    return methods


class Abort(Exception):
    """A status a handler ends its call with (`CallContext.abort`)."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class CallContext:
    """What a handler may ask of its call: the caller's metadata, the time left, the peer; and abort."""

    def __init__(self, method: str, metadata: Metadata, deadline: float | None, peer: str) -> None:
        self.method = method
        self._metadata = metadata
        self._deadline = deadline
        self._peer = peer

    def invocation_metadata(self) -> Metadata:
        return self._metadata

    def time_remaining(self) -> float | None:
        return None if self._deadline is None else max(0.0, self._deadline - time.monotonic())

    def peer(self) -> str:
        return self._peer

    async def abort(self, code: grpc.StatusCode, details: str = "") -> NoReturn:
        raise Abort(code, details)


def parse_timeout(value: str) -> float:
    """Seconds of a `grpc-timeout` header (at most 8 digits and a unit: H, M, S, m, u or n)."""
    digits, unit = value[:-1], value[-1:]
    if not (digits.isdigit() and len(digits) <= 8 and unit in _TIMEOUT_UNITS):
        raise Abort(grpc.StatusCode.INVALID_ARGUMENT, f"malformed grpc-timeout {value!r}: up to 8 digits and a unit")
    return int(digits) * _TIMEOUT_UNITS[unit]


def status_trailers(code: grpc.StatusCode, message: str, details: bytes | None = None) -> dict[str, Any]:
    """The trailers message of a call that ends with `code`."""
    headers = [(b"grpc-status", str(code.value[0]).encode())]
    if message:
        headers.append((b"grpc-message", urllib.parse.quote(message, safe=_MESSAGE_SAFE).encode()))
    if details:
        headers.append((b"grpc-status-details-bin", base64.b64encode(details).rstrip(b"=")))
    return {"type": "http.response.trailers", "headers": headers, "more_trailers": False}


def _error_trailers(method: str, error: BaseException) -> dict[str, Any]:
    """How a failed call ends: Atelier's errors with their details, other failures as INTERNAL."""
    if isinstance(error, Abort):
        return status_trailers(error.code, error.message)
    if isinstance(error, TimeoutError):
        return status_trailers(grpc.StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded")
    if not isinstance(error, AtelierError):
        log.exception("unhandled error in %s", method, exc_info=error)
        error = Internal(f"internal error in {method.rsplit('/', 1)[-1]}; see the service log")
    status = to_status(error)
    details = dict(status.trailing_metadata).get("grpc-status-details-bin")
    return status_trailers(status.code, status.details, details if isinstance(details, bytes) else None)


class _Disconnected(Exception):
    """The client went away (ASGI `http.disconnect`)."""


class _Framing:
    """Length-prefixed messages out of a request body, as it arrives."""

    def __init__(self, receive: Receive, limit: int) -> None:
        self._receive = receive
        self._limit = limit
        self._buffer = b""
        self.ended = False
        self.disconnected = False

    async def read(self) -> bytes | None:
        """The next message, or None at the end of the request."""
        while True:
            buffer = self._buffer
            if len(buffer) >= 5:
                if buffer[0]:
                    raise Abort(grpc.StatusCode.UNIMPLEMENTED, "compressed messages are not accepted; send identity")
                length = int.from_bytes(buffer[1:5], "big")
                if length > self._limit:
                    raise Abort(
                        grpc.StatusCode.RESOURCE_EXHAUSTED,
                        f"Received message larger than max ({length} vs. {self._limit})",
                    )
                if len(buffer) >= 5 + length:
                    self._buffer = buffer[5 + length :]
                    return buffer[5 : 5 + length]
            if self.ended:
                if buffer:
                    raise Abort(grpc.StatusCode.INTERNAL, "the request ended inside a message")
                return None
            event = await self._receive()
            if event["type"] == "http.disconnect":
                self.disconnected = True
                raise _Disconnected
            self._buffer = buffer + event.get("body", b"") if buffer else event.get("body", b"")
            self.ended = not event.get("more_body", False)


class GrpcAsgi:
    """An ASGI application serving gRPC methods (route only `application/grpc` POSTs to it)."""

    def __init__(self, methods: Mapping[str, Method], max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES) -> None:
        self.methods = dict(methods)
        self.max_message_bytes = max_message_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope["path"]
        framing = _Framing(receive, self.max_message_bytes)
        try:
            method, context = self._prepare(scope, path)
        except Abort as refused:
            await _send_status(send, status_trailers(refused.code, refused.message))
            return
        call = asyncio.current_task()
        assert call is not None
        watcher: asyncio.Task[None] | None = None
        started = False
        try:
            async with asyncio.timeout_at(_loop_deadline(context)):
                if method.kind == "unary":
                    request = await framing.read()
                    if request is None or await framing.read() is not None:
                        raise Abort(grpc.StatusCode.INTERNAL, "a unary call takes exactly one request message")
                    watcher = asyncio.create_task(_cancel_on_disconnect(framing, receive, call))
                    response = await method.handler(method.parse(request), context)
                    body = response.SerializeToString()
                    await send(_START)
                    started = True
                    await send({"type": "http.response.body", "body": _framed(body), "more_body": False})
                    await send(_OK)
                    return
                requests = _requests(framing, method.parse, call)
                async for response in method.handler(requests, context):
                    if not started:
                        await send(_START)
                        started = True
                    await send({"type": "http.response.body", "body": _framed(response.SerializeToString()),
                                "more_body": True})  # fmt: skip
                if not started:
                    await send(_START)
                    started = True
                await send({"type": "http.response.body", "body": b"", "more_body": False})
                await send(_OK)
        except _Disconnected:
            return
        except asyncio.CancelledError:
            if framing.disconnected:
                return  # the client went away: nobody to answer
            raise
        except Exception as error:  # noqa: BLE001 - every failure ends the call with a status
            trailers = _error_trailers(path, error)
            if started:
                await send({"type": "http.response.body", "body": b"", "more_body": False})
                await send(trailers)
            else:
                await _send_status(send, trailers)
        finally:
            if watcher is not None:
                watcher.cancel()

    def _prepare(self, scope: Scope, path: str) -> tuple[Method, CallContext]:
        method = self.methods.get(path)
        if method is None:
            raise Abort(grpc.StatusCode.UNIMPLEMENTED, f"Method not found: {path}")
        deadline = None
        metadata: list[tuple[str, str | bytes]] = []
        for raw_name, raw_value in scope["headers"]:
            name = raw_name.decode("latin-1")
            if name == "grpc-timeout":
                deadline = time.monotonic() + parse_timeout(raw_value.decode("latin-1"))
            elif name == "grpc-encoding":
                encoding = raw_value.decode("latin-1")
                if encoding != "identity":
                    raise Abort(
                        grpc.StatusCode.UNIMPLEMENTED, f"grpc-encoding {encoding!r} is not accepted; use identity"
                    )
            elif name.endswith("-bin"):
                metadata.append((name, base64.b64decode(raw_value + b"=" * (-len(raw_value) % 4))))
            elif name not in _PROTOCOL_HEADERS:
                metadata.append((name, raw_value.decode("latin-1")))
        client = scope.get("client")
        peer = f"ipv4:{client[0]}:{client[1]}" if client else ""
        return method, CallContext(path, tuple(metadata), deadline, peer)


def _framed(body: bytes) -> bytes:
    return b"\x00" + len(body).to_bytes(4, "big") + body


def _loop_deadline(context: CallContext) -> float | None:
    remaining = context.time_remaining()
    return None if remaining is None else asyncio.get_running_loop().time() + remaining


async def _send_status(send: Send, trailers: dict[str, Any]) -> None:
    """A call answered by its status alone: headers, an empty body, the status trailers."""
    await send(_START)
    await send({"type": "http.response.body", "body": b"", "more_body": False})
    await send(trailers)


async def _cancel_on_disconnect(framing: _Framing, receive: Receive, call: asyncio.Task[Any]) -> None:
    """After a unary request's body: the next event can only be the client's going away."""
    while (await receive())["type"] != "http.disconnect":
        pass
    framing.disconnected = True
    call.cancel()


async def _requests(framing: _Framing, parse: Callable[[bytes], Any], call: asyncio.Task[Any]) -> AsyncIterator[Any]:
    """A stream's requests, parsed as they arrive; the call is cancelled when the client goes away."""
    while True:
        try:
            request = await framing.read()
        except _Disconnected:
            call.cancel()
            return
        if request is None:
            return
        yield parse(request)
