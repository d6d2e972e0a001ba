"""The REST gateway's request series (`gateway.metrics`): counted by route template, method and status."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from gateway.app import create_app
from gateway.kserve import route_template
from gateway.settings import GatewaySettings
from gateway.upstream import Upstreams
from tests.integration.gateway.conftest import Stack

DURATION = "http_server_request_duration_seconds"


def count(registry: CollectorRegistry, method: str, route: str, status: int) -> float:
    labels = {"http_request_method": method, "http_route": route, "http_response_status_code": str(status)}
    return registry.get_sample_value(f"{DURATION}_count", labels) or 0.0


def test_requests_are_counted_by_route_template_method_and_status(stack: Stack, tmp_path: Path) -> None:
    stack.data.ensure_project("lab")
    registry = CollectorRegistry()
    home = tmp_path / "home"  # the stack's
    app = create_app(GatewaySettings(home=home), Upstreams(home, stack.addresses), registry)
    with TestClient(app, raise_server_exceptions=False) as rest:
        for _ in range(3):
            assert rest.get("/v1/projects/lab").status_code == 200
        assert rest.get("/v1/projects/nowhere").status_code == 404
        assert rest.get("/v1/no/such/route").status_code == 404
        assert rest.delete("/v1/projects/lab/datasets").status_code == 405
        assert rest.get("/healthz").status_code == 200
        assert rest.request("BREW", "/v1/projects/lab").status_code == 405

    assert count(registry, "GET", "/v1/projects/{project}", 200) == 3
    assert count(registry, "GET", "/v1/projects/{project}", 404) == 1  # one series per route, not per path
    assert count(registry, "GET", "", 404) == 1  # no route matched
    assert count(registry, "GET", "/healthz", 200) == 1
    assert count(registry, "_OTHER", "/v1/projects/{project}", 405) == 1  # unknown methods are bounded
    assert registry.get_sample_value("http_server_active_requests", {"http_request_method": "GET"}) == 0
    routes = {
        sample.labels["http_route"]
        for family in text_string_to_metric_families(generate_latest(registry).decode())
        for sample in family.samples
        if "http_route" in sample.labels
    }
    assert "/v1/projects/{project}" in routes
    assert "/v1/projects/lab" not in routes


def test_kserve_paths_are_counted_by_their_template() -> None:
    assert route_template("/v2/models/digits/infer") == "/v2/models/{model}/infer"
    assert route_template("/v2/models/digits/versions/3/ready") == "/v2/models/{model}/versions/{version}/ready"
    assert route_template("/v2/health/live") == "/v2/health/live"
    assert route_template("/v2") == "/v2"
