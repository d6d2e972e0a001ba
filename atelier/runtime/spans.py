"""The SERVER span of each gRPC call, continuing the caller's trace.

The caller's W3C `traceparent` (and baggage) is read from the call's metadata with the global
propagator, so the call's span, its log lines and the calls it makes to other services share the
caller's trace id. The span carries the attributes OpenTelemetry's gRPC server instrumentation
gives it (`rpc.system`, `rpc.service`, `rpc.method`, `rpc.grpc.status_code`, the peer), at a
fraction of that instrumentation's cost per call: no servicer-context proxy, no context managers,
and the peer is parsed only for spans that record. While the tracer provider has no span
processor (no exporter configured: the default), nothing would ever read a span, so a call gets a
non-recording one: the caller's trace id (or a new one) and a span id of its own, which is all the
logs and the outgoing calls use.
"""

from __future__ import annotations

import asyncio
import random
from typing import Any, Protocol
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


class Caller(Protocol):
    """What a span needs of a call: the caller's metadata (W3C trace context) and address (a grpc.aio
    servicer context, or gRPC served from ASGI)."""

    def invocation_metadata(self) -> Any: ...

    def peer(self) -> str: ...


class ServerSpans:
    """Opens the span of each call, from `provider` (the global tracer provider unless given)."""

    def __init__(self, provider: trace.TracerProvider | None = None) -> None:
        self.provider = provider
        self.tracer = trace.get_tracer(__name__, tracer_provider=provider)
        self._attributes: dict[str, dict[str, str]] = {}

    def open(self, method: str, context: Caller) -> OpenSpan:
        """Start the SERVER span of a call to `method` (`/package.Service/Method`) and make it current."""
        carrier = dict(context.invocation_metadata() or ())
        parent = propagate.extract(carrier)
        attributes = self._attributes.get(method)
        if attributes is None:
            service, _, name = method.lstrip("/").rpartition("/")
            attributes = self._attributes[method] = {"rpc.system": "grpc", "rpc.service": service, "rpc.method": name}
        if _exported(self.provider or trace.get_tracer_provider()):
            span = self.tracer.start_span(method, context=parent, kind=SpanKind.SERVER, attributes=attributes)
            if span.is_recording():
                _peer(span, context.peer(), carrier.get("user-agent"))
        else:
            span = _unrecorded(trace.get_current_span(parent).get_span_context())
        return OpenSpan(span, otel_context.attach(trace.set_span_in_context(span, parent)))


def _exported(provider: trace.TracerProvider) -> bool:
    """Whether a span of this provider reaches anything: false only for the SDK's provider without
    span processors (what `configure_tracing` sets up when no exporter is configured)."""
    processors = getattr(getattr(provider, "_active_span_processor", None), "_span_processors", None)
    return not isinstance(processors, tuple) or bool(processors)


def _unrecorded(parent: trace.SpanContext) -> trace.Span:
    """A span nobody records, continuing `parent`'s trace (or starting one)."""
    if parent.is_valid:
        trace_id, flags, state = parent.trace_id, parent.trace_flags, parent.trace_state
    else:
        trace_id, flags, state = random.getrandbits(128) or 1, trace.TraceFlags(trace.TraceFlags.SAMPLED), None
    own = trace.SpanContext(
        trace_id, random.getrandbits(64) or 1, is_remote=False, trace_flags=flags, trace_state=state
    )
    return trace.NonRecordingSpan(own)


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
