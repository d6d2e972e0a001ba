"""Forwarding any call to the service that owns it, as bytes: the front door knows no message types.

A unary method goes through gRPC's unary path; any streaming method (or one the descriptor pool does
not know) is forwarded as a stream both ways, which carries server, client and bidi streams alike.
Each call keeps the caller's metadata (authorization, custom keys), its remaining deadline and its
W3C trace context (continued by the front door's span), gets a request id, and ends with the
service's status, details and trailers unchanged. A service that cannot be reached ends the call
with UNAVAILABLE naming the service and its address. When the caller goes away, the call to the
service is cancelled.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import AsyncIterator, Iterable
from typing import Any, NoReturn

import grpc
from opentelemetry import propagate, trace

from atelier.errors import AtelierError, to_status
from atelier.runtime.metrics import RpcMetrics
from gateway.context import REQUEST_ID_HEADER, request_id_of
from gateway.errors import STATUS_DETAILS_KEY
from gateway.frontdoor.routing import Route, route_of
from gateway.upstream import Upstreams, unavailable

Metadata = tuple[tuple[str, str | bytes], ...]
Context = grpc.aio.ServicerContext[bytes, bytes]

_HOP_BY_HOP = frozenset({"user-agent", "content-type", "te", "host", "traceparent", "tracestate", REQUEST_ID_HEADER})
_tracer = trace.get_tracer("atelier.gateway")


def forwarded(metadata: Iterable[Any]) -> Metadata:
    """The metadata worth passing on: not HTTP/2's or gRPC's own (but the status details), not the trace
    context and request id (renewed by the front door)."""
    return tuple((k, v) for k, v in metadata if k not in _HOP_BY_HOP and _kept(k))


def _kept(key: str) -> bool:
    return key == STATUS_DETAILS_KEY or not key.startswith((":", "grpc-"))


class Proxy(grpc.GenericRpcHandler):  # type: ignore[type-arg]
    """The generic handler of every method of the services behind the front door.

    Methods of the `backends` (stack services, `data`) are forwarded; `local` names the services the front
    door's own server implements (never forwarded)."""

    def __init__(
        self,
        upstreams: Upstreams,
        backends: frozenset[str],
        local: frozenset[str] = frozenset(),
        metrics: RpcMetrics | None = None,
    ) -> None:
        self._upstreams = upstreams
        self._backends = backends
        self._local = local
        self._metrics = metrics
        self._handlers: dict[str, grpc.RpcMethodHandler[bytes, bytes] | None] = {}

    def service(self, handler_call_details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler[bytes, bytes] | None:
        path: str = handler_call_details.method  # type: ignore[attr-defined]
        if path not in self._handlers:
            self._handlers[path] = self._handler(path)
        return self._handlers[path]

    def _handler(self, path: str) -> grpc.RpcMethodHandler[bytes, bytes] | None:
        route = route_of(path)
        if route is None or route.service not in self._backends or path[1:].partition("/")[0] in self._local:
            return None
        # Partials of the coroutine methods: gRPC sees through them to run the handler as async, and a
        # call costs no extra coroutine frame.
        if route.unary:
            return grpc.unary_unary_rpc_method_handler(functools.partial(self._unary, route))
        return grpc.stream_stream_rpc_method_handler(functools.partial(self._stream, route))

    async def _unary(self, route: Route, request: bytes, context: Context) -> bytes:
        span, outgoing, reply = _begin(route, context)
        address = "(no address)"
        started = self._started(route)
        code = "OK"
        try:
            address, _ = self._upstreams.channel(route.service)
            call = self._upstreams.method("unary_unary", route.service, route.path)(
                request, timeout=context.time_remaining(), metadata=outgoing
            )
            response: bytes = await call
            await context.send_initial_metadata((*forwarded(await call.initial_metadata()), *reply))
            context.set_trailing_metadata((*forwarded(await call.trailing_metadata()), *reply))
            return response
        except grpc.aio.AioRpcError as error:
            code = error.code().name
            await _abort(context, route, address, error, reply)
        except AtelierError as error:
            code = error.code.name
            await _abort_with(context, error, reply)
        except asyncio.CancelledError:
            code = "CANCELLED"
            raise
        finally:
            span.end()
            self._finished(route, started, code)

    async def _stream(self, route: Route, requests: AsyncIterator[bytes], context: Context) -> None:
        span, outgoing, reply = _begin(route, context)
        address = "(no address)"
        call: grpc.aio.StreamStreamCall[bytes, bytes] | None = None
        started = self._started(route)
        code = "OK"
        try:
            address, _ = self._upstreams.channel(route.service)
            call = self._upstreams.method("stream_stream", route.service, route.path)(
                requests, timeout=context.time_remaining(), metadata=outgoing
            )
            await context.send_initial_metadata((*forwarded(await call.initial_metadata()), *reply))
            async for message in call:
                await context.write(message)
            context.set_trailing_metadata((*forwarded(await call.trailing_metadata()), *reply))
        except grpc.aio.AioRpcError as error:
            code = error.code().name
            await _abort(context, route, address, error, reply)
        except AtelierError as error:
            code = error.code.name
            await _abort_with(context, error, reply)
        except asyncio.CancelledError:
            code = "CANCELLED"
            raise
        finally:
            if call is not None:
                call.cancel()  # the caller went away (or the call is over: then a no-op)
            span.end()
            self._finished(route, started, code)

    def _started(self, route: Route) -> float:
        if self._metrics is not None:
            self._metrics.start(route.path, route.kind)
        return time.perf_counter()

    def _finished(self, route: Route, started: float, code: str) -> None:
        if self._metrics is not None:
            self._metrics.finish(route.path, route.kind, code, time.perf_counter() - started)


def _begin(route: Route, context: Context) -> tuple[trace.Span, Metadata, Metadata]:
    """The call's server span (continuing the caller's trace), the metadata it sends upstream and the
    metadata it adds to its answer (request id, trace context)."""
    metadata = context.invocation_metadata() or ()
    carrier = {k: v for k, v in metadata if isinstance(v, str)}
    request_id = request_id_of(carrier.get(REQUEST_ID_HEADER, ""))
    span = _tracer.start_span(
        route.path.removeprefix("/"),
        context=propagate.extract(carrier),
        kind=trace.SpanKind.SERVER,
        attributes={"rpc.system": "grpc", "atelier.service": route.service, "atelier.request_id": request_id},
    )
    trace_headers: dict[str, str] = {}
    propagate.inject(trace_headers, context=trace.set_span_in_context(span))
    reply: Metadata = ((REQUEST_ID_HEADER, request_id), *trace_headers.items())
    return span, (*forwarded(metadata), *reply), reply


async def _abort(
    context: Context, route: Route, address: str, error: grpc.aio.AioRpcError, reply: Metadata
) -> NoReturn:
    """End the call as the service ended it; a service that never answered is named."""
    trailing = forwarded(error.trailing_metadata() or ())
    answered = any(key == STATUS_DETAILS_KEY for key, _ in trailing)
    if error.code() is grpc.StatusCode.UNAVAILABLE and not answered:
        await _abort_with(context, unavailable(route.service, address, error.details() or "no answer"), reply)
    await context.abort(error.code(), error.details() or "", (*trailing, *reply))


async def _abort_with(context: Context, error: AtelierError, reply: Metadata) -> NoReturn:
    status = to_status(error)
    await context.abort(status.code, status.details, (*status.trailing_metadata, *reply))  # type: ignore[attr-defined]
