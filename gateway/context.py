"""Per-request context: the request id and the W3C trace context, in and out.

The gateway's span continues the caller's `traceparent`; calls to the services carry it on (the
request state's `trace_headers`, injected once per request), and the response carries the gateway span's `traceparent`
and `X-Request-Id` (the caller's, or a new one).
"""

from __future__ import annotations

import os
import re
import time

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.trace import Status, StatusCode
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.metrics import HttpMetrics, route_of

REQUEST_ID_HEADER = "x-request-id"
TRACE_HEADERS_KEY = "trace_headers"
"""The request state's key of the gateway span's W3C trace context, as metadata pairs."""
REQUEST_ID_PATTERN = r"[A-Za-z0-9._:-]{1,128}"
"""A caller's request id that is passed on (nginx's front door checks the same)."""
_REQUEST_ID = re.compile(REQUEST_ID_PATTERN)
_tracer = trace.get_tracer("atelier.gateway")


def request_id_of(given: str) -> str:
    """The caller's request id when it is a sensible one (1-128 of `A-Za-z0-9._:-`), else a new one (32
    random hex digits, as a UUID's hex without its version bits: a quarter of `uuid4().hex`'s cost)."""
    if given and _REQUEST_ID.fullmatch(given):
        return given
    return os.urandom(16).hex()


class RequestContext:
    """ASGI middleware giving every HTTP request an id and a server span, and counting it in
    `metrics` (by route template, once the router has matched it) when given."""

    def __init__(self, app: ASGIApp, metrics: HttpMetrics | None = None) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        request_id = request_id_of(headers.get(REQUEST_ID_HEADER, ""))
        state = scope.setdefault("state", {})
        state["request_id"] = request_id
        method, path = scope["method"], scope["path"]
        # The span is started and made current by hand rather than by `start_as_current_span`: the same
        # span, attributes and exception recording for a third of the tracing's cost per request.
        span = _tracer.start_span(
            f"{method} {path}",
            context=propagate.extract(headers),
            kind=trace.SpanKind.SERVER,
            attributes={"http.request.method": method, "url.path": path},
        )
        current = trace.set_span_in_context(span)
        token = otel_context.attach(current)
        outgoing: dict[str, str] = {}
        propagate.inject(outgoing, context=current)
        # The same trace context goes to the services the request calls (`TRACE_HEADERS_KEY`).
        state[TRACE_HEADERS_KEY] = tuple(outgoing.items())
        reply = [(REQUEST_ID_HEADER.encode(), request_id.encode())]
        reply += [(k.encode(), v.encode()) for k, v in outgoing.items()]

        status = 500  # what the server's error middleware answers if the app raises

        async def send_with_context(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *reply]
                status = message["status"]
                span.set_attribute("http.response.status_code", status)
            await send(message)

        started = time.perf_counter()
        if self.metrics is not None:
            self.metrics.started(method)
        try:
            await self.app(scope, receive, send_with_context)
        except Exception as error:  # recorded as `use_span` would, then left to the error middleware
            if span.is_recording():
                span.record_exception(error)
                span.set_status(Status(StatusCode.ERROR, f"{type(error).__name__}: {error}"))
            raise
        finally:
            otel_context.detach(token)
            # Named by its route's template once routed (OpenTelemetry's `{method} {http.route}`).
            route = route_of(scope)
            if route:
                span.set_attribute("http.route", route)
                span.update_name(f"{method} {route}")
            if self.metrics is not None:
                self.metrics.finished(method, route, status, time.perf_counter() - started)
            span.end()
