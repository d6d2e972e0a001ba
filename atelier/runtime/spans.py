"""The SERVER span of each gRPC call, continuing the caller's trace.

The caller's W3C `traceparent` (and baggage) is read from the call's metadata with the global
propagator, so the call's span, its log lines and the calls it makes to other services share the
caller's trace id. The span carries the attributes OpenTelemetry's gRPC server instrumentation
gives it (`rpc.system`, `rpc.service`, `rpc.method`, `rpc.grpc.status_code`, the peer), at a
fraction of that instrumentation's cost per call: no servicer-context proxy, no context managers,
and the peer is parsed only for spans that record.
"""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import unquote

import grpc
from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.trace import SpanKind, Status, StatusCode

_NOT_RECORDED = (grpc.aio.AbortError, grpc.aio.AioRpcError, asyncio.CancelledError)
_CODES = {code.name: code.value[0] for code in grpc.StatusCode}


class OpenSpan:
    """A call's span, current until `close()`."""

    __slots__ = ("span", "token")

    def __init__(self, span: trace.Span, token: object) -> None:
        self.span = span
        self.token = token

    def close(self, code: str, error: BaseException | None) -> None:
        """End the span with the call's status `code` (a `grpc.StatusCode` name) and, for an
        exception other than the call's own abort, record it."""
        span = self.span
        if span.is_recording():
            span.set_attribute("rpc.grpc.status_code", _CODES.get(code, grpc.StatusCode.UNKNOWN.value[0]))
            if code != "OK":
                span.set_status(Status(StatusCode.ERROR, code))
            if error is not None and not isinstance(error, _NOT_RECORDED):
                span.record_exception(error)
        span.end()
        otel_context.detach(self.token)  # type: ignore[arg-type]


class ServerSpans:
    """Opens the span of each call (tracer from the global provider unless given)."""

    def __init__(self, tracer: trace.Tracer | None = None) -> None:
        self.tracer = tracer or trace.get_tracer(__name__)
        self._attributes: dict[str, dict[str, str]] = {}

    def open(self, method: str, context: grpc.aio.ServicerContext[Any, Any]) -> OpenSpan:
        """Start the SERVER span of a call to `method` (`/package.Service/Method`) and make it current."""
        carrier = dict(context.invocation_metadata() or ())
        parent = propagate.extract(carrier)
        attributes = self._attributes.get(method)
        if attributes is None:
            service, _, name = method.lstrip("/").rpartition("/")
            attributes = self._attributes[method] = {"rpc.system": "grpc", "rpc.service": service, "rpc.method": name}
        span = self.tracer.start_span(method, context=parent, kind=SpanKind.SERVER, attributes=attributes)
        if span.is_recording():
            _peer(span, context.peer(), carrier.get("user-agent"))
        return OpenSpan(span, otel_context.attach(trace.set_span_in_context(span, parent)))


def _peer(span: trace.Span, peer: str, user_agent: object) -> None:
    """Peer attributes from gRPC's `ipv4:127.0.0.1:57284` / `ipv6:[::1]:57284` form."""
    if isinstance(user_agent, str):
        span.set_attribute("rpc.user_agent", user_agent)
    if peer.startswith("unix:") or ":" not in peer:
        return
    ip, _, port = peer.split(",")[0].split(":", 1)[1].rpartition(":")
    ip = unquote(ip)
    span.set_attribute("net.peer.ip", ip)
    span.set_attribute("net.peer.port", port)
    if ip in ("[::1]", "127.0.0.1"):
        span.set_attribute("net.peer.name", "localhost")
