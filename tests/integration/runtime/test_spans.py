"""The SERVER span of each call: continued from the caller, named and labelled, with its status."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import grpc
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from atelier.client.channel import ServiceClient, connect
from atelier.errors import FailedPrecondition, Internal
from atelier.runtime.logging import JsonFormatter
from atelier.runtime.server import GrpcService, ServiceHost
from atelier.runtime.settings import ServiceSettings
from tests.conftest import ServerThread
from tests.integration.runtime.test_server import SERVICE, register


@pytest.fixture
def exporter() -> Iterator[InMemorySpanExporter]:
    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        provider = TracerProvider()
        trace.set_tracer_provider(provider)
    spans = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(spans))
    yield spans
    spans.shutdown()


@pytest.fixture
def server() -> Iterator[ServerThread]:
    thread = ServerThread(lambda: ServiceHost("echo", ServiceSettings(), [GrpcService(SERVICE, register)]))
    thread.start()
    yield thread
    thread.stop()


def _finish(server: ServerThread) -> None:
    """Stop the server gracefully: a failed call's span ends after its status went out, so only
    once the calls in flight are done are all spans there."""
    server.submit(server.host.stop()).result(30)


def _server_span(exporter: InMemorySpanExporter, trace_id: int, method: str) -> ReadableSpan:
    found = [
        s
        for s in exporter.get_finished_spans()
        if s.context.trace_id == trace_id and s.kind == SpanKind.SERVER and s.name == f"/{SERVICE}/{method}"
    ]
    assert len(found) == 1, found
    return found[0]


def test_a_call_runs_in_a_server_span_of_the_callers_trace(
    exporter: InMemorySpanExporter, server: ServerThread
) -> None:
    client = ServiceClient(connect(server.address))
    with trace.get_tracer("test").start_as_current_span("caller") as caller:
        assert client.call(client.channel.unary_unary(f"/{SERVICE}/Log"), b"") == b"logged"
    span = _server_span(exporter, caller.get_span_context().trace_id, "Log")
    assert span.parent is not None
    assert span.parent.is_remote
    assert span.attributes is not None
    assert dict(span.attributes) | {"net.peer.port": "?"} == {
        "rpc.system": "grpc",
        "rpc.service": SERVICE,
        "rpc.method": "Log",
        "rpc.grpc.status_code": grpc.StatusCode.OK.value[0],
        "rpc.user_agent": span.attributes["rpc.user_agent"],
        "net.peer.ip": "127.0.0.1",
        "net.peer.port": "?",
        "net.peer.name": "localhost",
    }
    assert span.status.status_code == StatusCode.UNSET


def test_failed_calls_mark_their_span_and_record_unexpected_errors(
    exporter: InMemorySpanExporter, server: ServerThread
) -> None:
    client = ServiceClient(connect(server.address))
    method = client.channel.unary_unary(f"/{SERVICE}/Fail")
    with trace.get_tracer("test").start_as_current_span("caller") as caller:
        with pytest.raises(FailedPrecondition):
            client.call(method, b"atelier")
        with pytest.raises(Internal):
            client.call(method, b"boom")
    _finish(server)
    trace_id = caller.get_span_context().trace_id
    refused, broken = sorted(
        (s for s in exporter.get_finished_spans() if s.context.trace_id == trace_id and s.kind == SpanKind.SERVER),
        key=lambda s: s.start_time or 0,
    )
    assert refused.attributes is not None
    assert broken.attributes is not None
    assert refused.attributes["rpc.grpc.status_code"] == grpc.StatusCode.FAILED_PRECONDITION.value[0]
    assert refused.status.status_code == StatusCode.ERROR
    assert [e.name for e in refused.events] == []
    assert broken.attributes["rpc.grpc.status_code"] == grpc.StatusCode.INTERNAL.value[0]
    assert [e.attributes["exception.type"] for e in broken.events if e.attributes] == ["RuntimeError"]


def test_without_span_processors_calls_still_carry_the_trace(exporter: InMemorySpanExporter) -> None:
    """A provider with no processor (no exporter configured) records nothing, yet the call's logs
    carry the caller's trace id under a span id of the call's own, and a call without a caller's
    trace gets a trace id of its own."""
    quiet = TracerProvider()
    thread = ServerThread(
        lambda: ServiceHost("echo", ServiceSettings(), [GrpcService(SERVICE, register)], tracer_provider=quiet)
    )
    client = ServiceClient(connect(thread.start()))
    records: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: records.append(JsonFormatter("echo").format(record))  # type: ignore[method-assign]
    logger = logging.getLogger("test.echo")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        with trace.get_tracer("test").start_as_current_span("caller") as caller:
            client.call(client.channel.unary_unary(f"/{SERVICE}/Log"), b"")
        with pytest.raises(Internal, match=r"\(trace [0-9a-f]{32}\)") as untraced:
            client.call(client.channel.unary_unary(f"/{SERVICE}/Fail"), b"boom")
    finally:
        logger.removeHandler(handler)
        thread.stop()
    assert len(records) == 1
    logged = json.loads(records[0])
    context = caller.get_span_context()
    assert logged["trace_id"] == format(context.trace_id, "032x")
    assert logged["span_id"] not in ("", format(context.span_id, "016x"))
    assert "0" * 32 not in str(untraced.value)
    assert not [s for s in exporter.get_finished_spans() if s.kind == SpanKind.SERVER]
