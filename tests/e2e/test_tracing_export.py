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
from dataclasses import dataclass
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


@dataclass(frozen=True)
class Span:
    service: str
    name: str
    trace_id: str
    span_id: str
    parent_id: str


class Receiver(trace_service_pb2_grpc.TraceServiceServicer):
    """An OTLP trace receiver that keeps what it is sent."""

    def __init__(self) -> None:
        self.spans: list[tuple[str, str, str]] = []
        self.tree: list[Span] = []
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
                        self.tree.append(
                            Span(service, span.name, span.trace_id.hex(), span.span_id.hex(), span.parent_span_id.hex())
                        )
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


def test_a_dataset_push_from_the_cli_is_one_trace_through_the_data_service(
    receiver: tuple[Receiver, str], tmp_path: Path
) -> None:
    """`atelier data push` opens the trace; each of its calls is a client span under it, and the data
    service's span of each call is that client span's child."""
    sink, endpoint = receiver
    address_file = tmp_path / "run" / "data.json"
    otel = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint,
        "OTEL_EXPORTER_OTLP_INSECURE": "true",
        "OTEL_BSP_SCHEDULE_DELAY": "100",
    }
    env = {**os.environ, "ATELIER_HOME": str(tmp_path), "ATELIER_DATA_ADDRESS_FILE": str(address_file), **otel}
    service = subprocess.Popen([sys.executable, "-m", "services.data"], env=env, stderr=subprocess.DEVNULL)
    try:
        for _ in range(400):
            if address_file.exists():
                break
            time.sleep(0.05)
        source = tmp_path / "src"
        source.mkdir()
        (source / "a.txt").write_text("hello")
        (source / "b.bin").write_bytes(os.urandom(300_000))
        pushed = subprocess.run(
            [sys.executable, "-m", "atelier.cli.main", "data", "push", str(source), "notes"],
            env={**env, "ATELIER_DATA_ADDRESS": json.loads(address_file.read_text())["address"]},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert pushed.returncode == 0, pushed.stderr
        deadline = time.monotonic() + 30
        methods = {"FindMissingChunks", "UploadChunks", "CreateVersion"}
        while time.monotonic() < deadline:
            with sink.lock:
                roots = [s for s in sink.tree if s.name == "atelier data push"]
                spans = [s for s in sink.tree if roots and s.trace_id == roots[0].trace_id]
            served = {s.name.rsplit("/", 1)[-1] for s in spans if s.service == "atelier-data"}
            if roots and methods <= served:
                break
            time.sleep(0.1)
        (root,) = roots
        assert (root.service, root.parent_id) == ("atelier-cli", "")
        by_id = {s.span_id: s for s in spans}
        for method in methods:
            server = [s for s in spans if s.service == "atelier-data" and s.name.endswith(f"/{method}")]
            assert server, f"no span of {method} in the push's trace"
            client = by_id[server[0].parent_id]
            assert (client.service, client.name.rsplit("/", 1)[-1]) == ("atelier-cli", method)
            assert client.parent_id == root.span_id
    finally:
        service.terminate()
        service.wait(timeout=30)
