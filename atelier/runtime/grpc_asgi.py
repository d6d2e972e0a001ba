"""gRPC served from an ASGI application, on an HTTP/2 server that sends trailers (Envoy, through pyvoy).

grpc.aio spends more CPU on each call than the rest of a small inference request does; Envoy's
HTTP/2 in front of the same Python costs a third of it (docs/performance.md, "A cheaper gRPC front
end"). This module is the gRPC protocol over ASGI, as PROTOCOL-HTTP2.md in grpc/grpc defines it:
length-prefixed messages, `grpc-timeout` deadlines, metadata, the status in trailers with
`google.rpc.Status` details (Atelier's errors encoded as the error interceptor encodes them),
cancellation when the client goes away, unary and streaming methods of every kind. What a method
does is its servicer's: the same handlers grpc.aio calls (grpc's own health and reflection servicers
included), given a `CallContext`.

Messages are not compressed here (`grpc-encoding` other than identity is UNIMPLEMENTED, as the
protocol prescribes).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import functools
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, NoReturn

import grpc
from google.protobuf import descriptor, message_factory

from atelier.errors import AtelierError
from atelier.runtime.auth import Authorizer, CallAccess
from atelier.runtime.grpc_wire import (
    DEFAULT_MAX_MESSAGE_BYTES,
    OK,
    PROTOCOL_HEADERS,
    START,
    Abort,
    Disconnected,
    Framing,
    Receive,
    Send,
    error_trailers,
    framed,
    parse_timeout,
    send_status,
    status_trailers,
)
from atelier.runtime.interceptors import log_call
from atelier.runtime.metrics import RpcMetrics
from atelier.runtime.spans import ServerSpans

Scope = Mapping[str, Any]
Metadata = tuple[tuple[str, str | bytes], ...]


@dataclass(frozen=True)
class Method:
    """One method to serve, as grpc.aio calls its handler: a request or an async iterator of them in,
    a response, an async iterator of them, or (server streaming) writes through `CallContext.write`."""

    client_streaming: bool
    server_streaming: bool
    handler: Callable[[Any, CallContext], Any]
    parse: Callable[[bytes], Any]

    @functools.cached_property
    def kind(self) -> str:
        """`unary_unary`, `unary_stream`, `stream_unary` or `stream_stream`."""
        return f"{'stream' if self.client_streaming else 'unary'}_{'stream' if self.server_streaming else 'unary'}"


def methods_of(servicer: object, service: descriptor.ServiceDescriptor) -> dict[str, Method]:
    """The servicer's handlers of `service`'s methods, by request path (those it does not define are
    left out, and so answered UNIMPLEMENTED)."""
    methods: dict[str, Method] = {}
    for method in service.methods:
        handler = getattr(servicer, method.name, None)
        if handler is None:
            continue
        request = message_factory.GetMessageClass(method.input_type)
        methods[f"/{service.full_name}/{method.name}"] = Method(
            method.client_streaming, method.server_streaming, handler, request.FromString
        )
    return methods


class CallContext:
    """What a handler may ask of its call: the caller's metadata, the time left, the peer; and abort."""

    def __init__(self, method: str, metadata: Metadata, deadline: float | None, peer: str) -> None:
        self.method = method
        self._metadata = metadata
        self._deadline = deadline
        self._peer = peer
        self._write: Callable[[Any], Awaitable[None]] | None = None

    async def write(self, message: Any) -> None:
        """Send one response of a server-streaming call (as grpc.aio's `context.write`)."""
        if self._write is None:
            raise Abort(grpc.StatusCode.INTERNAL, f"{self.method} is not server-streaming: return its response")
        await self._write(message)

    def invocation_metadata(self) -> Metadata:
        return self._metadata

    def time_remaining(self) -> float | None:
        return None if self._deadline is None else max(0.0, self._deadline - time.monotonic())

    def peer(self) -> str:
        return self._peer

    def authorization(self) -> str | None:
        """The caller's `authorization` header, if any."""
        for key, value in self._metadata:
            if key == "authorization":
                return str(value)
        return None

    async def abort(self, code: grpc.StatusCode, details: str = "") -> NoReturn:
        raise Abort(code, details)


@dataclass(frozen=True)
class Observed:
    """What every call goes through, as the service host's call interceptor does on grpc.aio: a SERVER
    span continuing the caller's trace, the RPC metrics, the log line, and the access check (with the
    audit record of a write)."""

    metrics: RpcMetrics | None = None
    spans: ServerSpans | None = None
    authorizer: Authorizer | None = None
    # Methods whose successful calls log at DEBUG (a data plane's per-request calls).
    quiet: tuple[str, ...] = ()


class GrpcAsgi:
    """An ASGI application serving gRPC methods (route only `application/grpc` POSTs to it)."""

    def __init__(
        self,
        methods: Mapping[str, Method],
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
        observed: Observed | None = None,
    ) -> None:
        self.methods = dict(methods)
        self.max_message_bytes = max_message_bytes
        self.observed = observed or Observed()
        # Unary calls' disconnect watchers still waiting for their request's end (held until then).
        self.watchers: set[asyncio.Task[None]] = set()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope["path"]
        try:
            method, context = self._prepare(scope, path)
        except Abort as refused:
            await send_status(send, status_trailers(refused.code, refused.message))
            return
        observed = self.observed
        kind = method.kind
        span = observed.spans.open(path, context) if observed.spans is not None else None
        if observed.metrics is not None:
            observed.metrics.start(path, kind)
        started = time.perf_counter()
        call = _Call(self, method, context, receive, send)
        try:
            await call.serve()
        finally:
            seconds = time.perf_counter() - started
            if observed.metrics is not None:
                observed.metrics.finish(path, kind, call.code, seconds)
            log_call(path, call.code, seconds, observed.quiet)
            if span is not None:
                span.close(call.code, call.failure)
            if call.access is not None and observed.authorizer is not None:
                observed.authorizer.record(path, call.access, context.peer(), call.code)

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
            elif name not in PROTOCOL_HEADERS:
                metadata.append((name, raw_value.decode("latin-1")))
        client = scope.get("client")
        peer = f"ipv4:{client[0]}:{client[1]}" if client else ""
        return method, CallContext(path, tuple(metadata), deadline, peer)


class _Call:
    """One call: read, check, run the handler, answer; `code` is how it ended."""

    def __init__(self, app: GrpcAsgi, method: Method, context: CallContext, receive: Receive, send: Send) -> None:
        self.method = method
        self.context = context
        self.receive = receive
        self.send = _sending(send)
        self.framing = Framing(receive, app.max_message_bytes)
        self.authorizer = app.observed.authorizer
        self.watchers = app.watchers
        self.code = "OK"
        self.failure: BaseException | None = None
        self.access: CallAccess | None = None
        self.started = False
        # Whether the handler is done (a client leaving after that cancels nothing).
        self.finished = False

    async def serve(self) -> None:
        task = asyncio.current_task()
        assert task is not None
        try:
            async with asyncio.timeout_at(_loop_deadline(self.context)):
                if self.method.client_streaming:
                    argument = await self._request_stream(task)
                else:
                    argument = await self._single()
                    watcher = asyncio.create_task(_cancel_on_disconnect(self, task))
                    self.watchers.add(watcher)
                    watcher.add_done_callback(self.watchers.discard)
                if self.method.server_streaming:
                    await self._answer_stream(argument)
                else:
                    await self._answer_one(argument)
        except Disconnected:
            self.code = "CANCELLED"
        except asyncio.CancelledError:
            self.code = "CANCELLED"
            if not self.framing.disconnected:
                raise
            # the client went away: nobody to answer
        except Exception as error:  # noqa: BLE001 - every failure ends the call with a status
            self.finished = True
            code, trailers = error_trailers(self.context.method, error)
            self.code = code.name
            self.failure = None if isinstance(error, AtelierError | Abort | TimeoutError) else error
            with contextlib.suppress(Disconnected):  # the caller left: nobody to tell
                if self.started:
                    await self.send({"type": "http.response.body", "body": b"", "more_body": False})
                    await self.send(trailers)
                else:
                    await send_status(self.send, trailers)
        finally:
            # A unary call's disconnect watcher is not cancelled: it waits in `receive`, which the server
            # answers with http.disconnect once the response is complete (pyvoy would otherwise set the
            # result of the cancelled wait later, and asyncio log an InvalidStateError for every call).
            # Once the handler is done (`finished`), the watcher only ends.
            self.finished = True

    async def _single(self) -> Any:
        """A unary call's request, parsed and, with access control on, checked."""
        raw = await self.framing.read()
        if raw is None or await self.framing.read() is not None:
            raise Abort(grpc.StatusCode.INTERNAL, "a unary call takes exactly one request message")
        request = self.method.parse(raw)
        if self.authorizer is not None and self.authorizer.applies_to(self.context.method):
            self.access = await self.authorizer.check(self.context.method, request, self.context.authorization())
        return request

    async def _request_stream(self, task: asyncio.Task[Any]) -> AsyncIterator[Any]:
        """A client stream's requests; with access control on, the first is checked before the handler
        starts, and later ones naming another resource as they come."""
        requests: AsyncIterator[Any] = _requests(self.framing, self.method.parse, task)
        method, authorizer = self.context.method, self.authorizer
        if authorizer is not None and authorizer.applies_to(method):
            first = await anext(requests, None)
            self.access = await authorizer.check(method, first, self.context.authorization())
            requests = authorizer.checked_stream(method, first, requests, self.context.authorization())
        return requests

    async def _answer_one(self, argument: Any) -> None:
        response = await self.method.handler(argument, self.context)
        self.finished = True
        body = framed(response.SerializeToString())
        await self.send(START)
        self.started = True
        await self.send({"type": "http.response.body", "body": body, "more_body": False})
        await self.send(OK)

    async def _write(self, response: Any) -> None:
        if not self.started:
            await self.send(START)
            self.started = True
        await self.send({"type": "http.response.body", "body": framed(response.SerializeToString()), "more_body": True})

    async def _answer_stream(self, argument: Any) -> None:
        """A server stream: the handler yields its responses, or writes them (`CallContext.write`)."""
        self.context._write = self._write  # noqa: SLF001 - the call hands its context the writer
        result = self.method.handler(argument, self.context)
        if hasattr(result, "__aiter__"):
            async for response in result:
                await self._write(response)
        else:
            await result
        self.finished = True
        if not self.started:
            await self.send(START)
            self.started = True
        await self.send({"type": "http.response.body", "body": b"", "more_body": False})
        await self.send(OK)


def _sending(send: Send) -> Send:
    """`send`, raising `Disconnected` where the server says the client has gone (ASGI: an OSError from
    `send`), so that a stream whose caller left ends as cancelled rather than as a failure."""

    async def checked(message: Any) -> None:
        try:
            await send(message)
        except OSError as error:
            raise Disconnected(str(error)) from error

    return checked


def _loop_deadline(context: CallContext) -> float | None:
    remaining = context.time_remaining()
    return None if remaining is None else asyncio.get_running_loop().time() + remaining


async def _cancel_on_disconnect(call: _Call, task: asyncio.Task[Any]) -> None:
    """After a unary request's body: the next event can only be the request's end, the client's going
    away before the answer is complete, or the response's end after it."""
    while (await call.receive())["type"] != "http.disconnect":
        pass
    if not call.finished:
        call.framing.disconnected = True
        task.cancel()


async def _requests(framing: Framing, parse: Callable[[bytes], Any], call: asyncio.Task[Any]) -> AsyncIterator[Any]:
    """A stream's requests, parsed as they arrive; the call is cancelled when the client goes away."""
    while True:
        try:
            request = await framing.read()
        except Disconnected:
            call.cancel()
            return
        if request is None:
            return
        yield parse(request)
