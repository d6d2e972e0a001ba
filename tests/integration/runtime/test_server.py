"""The shared runtime: graceful shutdown, the error interceptor, health, reflection, tracing, logs."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from atelier.client.channel import ServiceClient, connect
from atelier.errors import FailedPrecondition, Internal
from atelier.runtime.logging import JsonFormatter
from atelier.runtime.server import GrpcService, ServiceHost
from atelier.runtime.settings import ServiceSettings
from atelier.stack.addresses import read_address_file
from tests.conftest import ServerThread

SERVICE = "test.Echo"
release = threading.Event()


async def wait(request: bytes, context: Any) -> bytes:
    while not release.is_set():
        await asyncio.sleep(0.01)
    return b"done:" + request


async def fail(request: bytes, context: Any) -> bytes:
    if request == b"atelier":
        raise FailedPrecondition("the thing is not ready", metadata={"resource": "things/1"})
    raise RuntimeError("secret internal detail")


async def stream_fail(request: bytes, context: Any) -> AsyncIterator[bytes]:
    yield b"one"
    raise FailedPrecondition("stopped after one")


def log_line(request: bytes, context: Any) -> Any:
    async def run() -> bytes:
        logging.getLogger("test.echo").info("handling")
        return b"logged"

    return run()


def register(server: grpc.aio.Server) -> None:
    identity: Callable[[bytes], bytes] = lambda b: b  # noqa: E731
    handlers = {
        "Wait": grpc.unary_unary_rpc_method_handler(wait, identity, identity),
        "Fail": grpc.unary_unary_rpc_method_handler(fail, identity, identity),
        "StreamFail": grpc.unary_stream_rpc_method_handler(stream_fail, identity, identity),
        "Log": grpc.unary_unary_rpc_method_handler(log_line, identity, identity),
    }
    server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler(SERVICE, handlers)])


@pytest.fixture
def host() -> Iterator[tuple[str, ServerThread]]:
    release.clear()
    thread = ServerThread(
        lambda: ServiceHost("echo", ServiceSettings(shutdown_grace_seconds=5), [GrpcService(SERVICE, register)])
    )
    address = thread.start()
    yield address, thread
    release.set()
    thread.stop()


def call(address: str, method: str, payload: bytes, timeout: float = 10) -> bytes:
    channel = connect(address)
    return channel.unary_unary(f"/{SERVICE}/{method}")(payload, timeout=timeout)  # type: ignore[no-any-return]


def test_atelier_errors_become_status_with_details(host: tuple[str, ServerThread]) -> None:
    client = ServiceClient(connect(host[0]))
    method = client.channel.unary_unary(f"/{SERVICE}/Fail")
    with pytest.raises(FailedPrecondition, match="the thing is not ready") as caught:
        client.call(method, b"atelier")
    assert caught.value.metadata == {"resource": "things/1"}
    assert caught.value.reason_name == "FAILED_PRECONDITION"


def test_unexpected_errors_are_internal_without_leaking(host: tuple[str, Any]) -> None:
    client = ServiceClient(connect(host[0]))
    with pytest.raises(Internal, match=r"internal error in Fail \(trace [0-9a-f]{32}\)") as caught:
        client.call(client.channel.unary_unary(f"/{SERVICE}/Fail"), b"boom")
    assert "secret" not in str(caught.value)


def test_streaming_errors_arrive_after_the_items(host: tuple[str, Any]) -> None:
    client = ServiceClient(connect(host[0]))
    received: list[bytes] = []
    with pytest.raises(FailedPrecondition, match="stopped after one"):
        received.extend(client.stream(client.channel.unary_stream(f"/{SERVICE}/StreamFail"), b""))
    assert received == [b"one"]


def test_health_and_reflection(host: tuple[str, Any]) -> None:
    channel = connect(host[0])
    health = health_pb2_grpc.HealthStub(channel)
    for name in ("", SERVICE):
        assert (
            health.Check(health_pb2.HealthCheckRequest(service=name)).status == health_pb2.HealthCheckResponse.SERVING
        )
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)
    responses = stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]))
    names = {s.name for r in responses for s in r.list_services_response.service}
    assert {SERVICE, "grpc.health.v1.Health"} <= names


def test_graceful_shutdown_finishes_in_flight_calls_and_refuses_new_ones(host: tuple[str, Any]) -> None:
    address, thread = host
    results: list[bytes] = []
    in_flight = threading.Thread(target=lambda: results.append(call(address, "Wait", b"x")))
    in_flight.start()
    time.sleep(0.3)
    stopping = thread.submit(thread.host.stop())
    time.sleep(0.3)
    with pytest.raises(grpc.RpcError) as refused:
        call(address, "Wait", b"late", timeout=2)
    assert refused.value.code() == grpc.StatusCode.UNAVAILABLE  # type: ignore[attr-defined]
    release.set()
    in_flight.join(10)
    stopping.result(10)
    assert results == [b"done:x"]


def test_trace_context_crosses_the_wire_and_reaches_logs(host: tuple[str, Any]) -> None:
    exporter = InMemorySpanExporter()
    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        provider = TracerProvider()
        trace.set_tracer_provider(provider)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    records: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: records.append(JsonFormatter("echo").format(record))  # type: ignore[method-assign]
    logging.getLogger("test.echo").addHandler(handler)
    logging.getLogger("test.echo").setLevel(logging.INFO)
    try:
        with trace.get_tracer("test").start_as_current_span("client-root") as root:
            call(host[0], "Log", b"")
            trace_id = format(root.get_span_context().trace_id, "032x")
    finally:
        logging.getLogger("test.echo").removeHandler(handler)
    spans = [s for s in exporter.get_finished_spans() if format(s.context.trace_id, "032x") == trace_id]
    kinds = {(s.name, s.kind.name) for s in spans}
    assert (f"/{SERVICE}/Log", "CLIENT") in kinds
    assert (f"/{SERVICE}/Log", "SERVER") in kinds
    assert any(f'"trace_id": "{trace_id}"' in line for line in records)


def test_a_stopped_service_removes_the_address_file_it_wrote(tmp_path: Path) -> None:
    published = tmp_path / "run" / "echo.json"
    thread = ServerThread(
        lambda: ServiceHost(
            "echo", ServiceSettings(shutdown_grace_seconds=1, address_file=published), [GrpcService(SERVICE, register)]
        )
    )
    address = thread.start()
    found = read_address_file(published)
    assert found is not None
    assert found.address == address

    thread.stop()

    assert not published.exists()
