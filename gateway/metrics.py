"""The REST gateway's request metrics, named as OpenTelemetry's HTTP semantic conventions are when
exported to Prometheus: `http_server_request_duration_seconds` (labels `http_request_method`,
`http_route`, `http_response_status_code`) and `http_server_active_requests`.

`http_route` is the route's template (`/v1/projects/{project}/datasets/{dataset}`, KServe's
`/v2/models/{model}/infer`), never the path itself, so a label holds one value per route; a path no
route matches has an empty route. Methods outside HTTP's own are counted as `_OTHER`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Gauge, Histogram

from atelier.runtime.metrics import RPC_LATENCY_BUCKETS

ROUTE_KEY = "atelier.route"
"""The scope key a route sets to its template when it matches."""

_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"})


class HttpMetrics:
    """The HTTP server series of the gateway, in one service host's registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.duration = Histogram(
            "http_server_request_duration_seconds",
            "Time from the start of an HTTP request to the end of its response, on the gateway.",
            ["http_request_method", "http_route", "http_response_status_code"],
            buckets=RPC_LATENCY_BUCKETS,
            registry=registry,
        )
        self.active = Gauge(
            "http_server_active_requests",
            "HTTP requests the gateway is serving now.",
            ["http_request_method"],
            registry=registry,
        )
        self._children: dict[tuple[str, str, int], Any] = {}
        self._active: dict[str, Any] = {}

    def started(self, method: str) -> None:
        self._active_of(method).inc()

    def finished(self, method: str, route: str, status: int, seconds: float) -> None:
        self._active_of(method).dec()
        method = _method(method)
        key = (method, route, status)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = self.duration.labels(method, route, str(status))
        child.observe(seconds)

    def _active_of(self, method: str) -> Any:
        """The active-requests gauge of `method`, looked up once per method (`labels` costs a lock and a
        tuple per call)."""
        method = _method(method)
        gauge = self._active.get(method)
        if gauge is None:
            gauge = self._active[method] = self.active.labels(method)
        return gauge


def _method(method: str) -> str:
    return method if method in _METHODS else "_OTHER"


def route_of(scope: Mapping[str, Any]) -> str:
    """The template of the route that served `scope` (after routing), or "" when none matched."""
    template = scope.get(ROUTE_KEY)
    if isinstance(template, str):
        return template
    path = getattr(scope.get("route"), "path", None)  # FastAPI's own routes (/healthz, /openapi.json)
    return path if isinstance(path, str) else ""
