"""Every service's Prometheus endpoint: RPC series per method and status code, process metrics."""

from __future__ import annotations

import json
import time
import urllib.error
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from prometheus_client import Counter

from atelier.errors import FailedPrecondition
from atelier.runtime.server import GrpcService, ServiceHost
from atelier.runtime.settings import ServiceSettings
from tests.conftest import ServerThread
from tests.integration.runtime.test_server import SERVICE, call, register
from tests.prometheus import scrape, value


@pytest.fixture
def host(tmp_path: Path) -> Iterator[ServerThread]:
    settings = ServiceSettings(address_file=tmp_path / "echo.json")
    thread = ServerThread(lambda: ServiceHost("echo", settings, [GrpcService(SERVICE, register)]))
    thread.start()
    yield thread
    thread.stop()


def test_rpcs_are_counted_by_method_and_code(host: ServerThread) -> None:
    assert call(host.address, "Log", b"") == b"logged"
    assert call(host.address, "Log", b"") == b"logged"
    with pytest.raises(grpc.RpcError):
        call(host.address, "Fail", b"atelier")

    samples = scrape(host.host.metrics.address)
    ok = {"grpc_service": SERVICE, "grpc_method": "Log", "grpc_type": "unary"}
    assert value(samples, "grpc_server_started_total", **ok) == 2
    assert value(samples, "grpc_server_handled_total", **ok, grpc_code="OK") == 2
    assert value(samples, "grpc_server_handling_seconds_count", **ok) == 2
    assert value(samples, "grpc_server_handling_seconds_bucket", **ok, le="+Inf") == 2
    failed = {"grpc_service": SERVICE, "grpc_method": "Fail"}
    assert value(samples, "grpc_server_handled_total", **failed, grpc_code="FAILED_PRECONDITION") == 1
    assert value(samples, "grpc_server_handled_total", **failed, grpc_code="OK") == 0


def test_streams_are_typed_and_process_metrics_are_there(host: ServerThread) -> None:
    from atelier.client.channel import ServiceClient, connect

    client = ServiceClient(connect(host.address))
    with pytest.raises(FailedPrecondition):
        list(client.stream(client.channel.unary_stream(f"/{SERVICE}/StreamFail"), b""))
    labels = {"grpc_method": "StreamFail", "grpc_type": "server_stream", "grpc_code": "FAILED_PRECONDITION"}
    # The status can reach the client before the server's interceptor has counted the call (its
    # abort sends it): the count is looked at until it shows, for up to 5 s.
    for _ in range(100):
        samples = scrape(host.host.metrics.address)
        if value(samples, "grpc_server_handled_total", **labels):
            break
        time.sleep(0.05)
    assert value(samples, "grpc_server_handled_total", **labels) == 1
    assert value(samples, "process_resident_memory_bytes") > 0
    assert "python_info" in samples


def test_a_service_adds_its_own_series_and_publishes_the_endpoint(host: ServerThread, tmp_path: Path) -> None:
    jobs = Counter("atelier_test_jobs", "Jobs seen by the test.", registry=host.host.registry)
    jobs.inc(3)
    published = json.loads((tmp_path / "echo.json").read_text())
    assert published["metrics"] == host.host.metrics.address
    assert value(scrape(published["metrics"]), "atelier_test_jobs_total") == 3


def test_metrics_can_be_turned_off() -> None:
    thread = ServerThread(
        lambda: ServiceHost("echo", ServiceSettings(metrics_port=-1), [GrpcService(SERVICE, register)])
    )
    thread.start()
    try:
        assert thread.host.metrics is None
        assert call(thread.address, "Log", b"") == b"logged"
    finally:
        thread.stop()


def test_the_endpoint_stops_with_the_service(tmp_path: Path) -> None:
    thread = ServerThread(lambda: ServiceHost("echo", ServiceSettings(), [GrpcService(SERVICE, register)]))
    thread.start()
    address = thread.host.metrics.address
    scrape(address)
    thread.stop()
    with pytest.raises(urllib.error.URLError):
        scrape(address)
