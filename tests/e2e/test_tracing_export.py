"""A service exports its spans over OTLP when OTEL_EXPORTER_OTLP_ENDPOINT is set, and the trace
started by a client continues in the service."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
import pytest
from opentelemetry import trace
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc

from atelier.client import DataClient
from atelier.errors import NotFound
from atelier.runtime.tracing import configure_tracing

pytestmark = pytest.mark.timeout(120)


class Receiver(trace_service_pb2_grpc.TraceServiceServicer):
    """An OTLP trace receiver that keeps what it is sent."""

    def __init__(self) -> None:
        self.spans: list[tuple[str, str, str]] = []
        self.lock = threading.Lock()

    def Export(self, request: Any, context: Any) -> Any:  # noqa: N802 - the OTLP service's name
        with self.lock:
            for resource in request.resource_spans:
                service = next(
                    (a.value.string_value for a in resource.resource.attributes if a.key == "service.name"), ""
                )
                for scope in resource.scope_spans:
                    for span in scope.spans:
                        self.spans.append((service, span.name, span.trace_id.hex()))
        return trace_service_pb2.ExportTraceServiceResponse()


@pytest.fixture
def receiver() -> Iterator[tuple[Receiver, str]]:
    sink = Receiver()
    server = grpc.server(futures.ThreadPoolExecutor(4))
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(sink, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield sink, f"http://127.0.0.1:{port}"
    server.stop(0)


def test_service_spans_reach_the_otlp_endpoint_in_the_callers_trace(
    receiver: tuple[Receiver, str], tmp_path: Path
) -> None:
    sink, endpoint = receiver
    address_file = tmp_path / "run" / "data.json"
    env = {
        **os.environ,
        "ATELIER_HOME": str(tmp_path),
        "ATELIER_DATA_ADDRESS_FILE": str(address_file),
        "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint,
        "OTEL_EXPORTER_OTLP_INSECURE": "true",
        "OTEL_BSP_SCHEDULE_DELAY": "100",
    }
    service = subprocess.Popen([sys.executable, "-m", "services.data"], env=env, stderr=subprocess.PIPE)
    try:
        for _ in range(200):
            if address_file.exists():
                break
            time.sleep(0.05)
        client = DataClient.at(json.loads(address_file.read_text())["address"])
        configure_tracing("test-client")
        with trace.get_tracer("test").start_as_current_span("user-action") as root:
            with pytest.raises(NotFound):
                client.get_project("projects/ghost")
            trace_id = format(root.get_span_context().trace_id, "032x")
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with sink.lock:
                exported = [s for s in sink.spans if s[2] == trace_id]
            if exported:
                break
            time.sleep(0.1)
        assert ("atelier-data", "/atelier.data.v1.DataService/GetProject", trace_id) in exported
        service.terminate()
        _, stderr = service.communicate(timeout=30)
        lines = [json.loads(line) for line in stderr.decode().splitlines() if line.startswith("{")]
        assert any(line.get("trace_id") == trace_id for line in lines), "no log line carries the trace id"
    finally:
        if service.poll() is None:
            service.kill()
