"""Prometheus metrics of a service: one registry per service host, RPC metrics for every method,
process metrics, and an HTTP endpoint Prometheus scrapes.

RPC series use the names of go-grpc-prometheus (`grpc_server_started_total`,
`grpc_server_handled_total`, `grpc_server_handling_seconds`, labels `grpc_type`, `grpc_service`,
`grpc_method`, `grpc_code`), which the common gRPC Grafana dashboards and alert rules expect.
A service adds its own series to the host's registry: instruments for events it counts, and
collectors (`prometheus_client.registry.Collector`) for state it reads at scrape time (queue
lengths, bytes stored), so a scrape always sees the current value.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from wsgiref.simple_server import WSGIServer

from prometheus_client import (
    CollectorRegistry,
    Counter,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    start_http_server,
)

RPC_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
"""Seconds: from sub-millisecond lookups to multi-second uploads (the client default stops at 10 s)."""

GRPC_TYPES = {
    "unary_unary": "unary",
    "unary_stream": "server_stream",
    "stream_unary": "client_stream",
    "stream_stream": "bidi_stream",
}
"""gRPC handler kinds as go-grpc-prometheus's `grpc_type` label spells them."""


def service_registry() -> CollectorRegistry:
    """A fresh registry with the process, platform and garbage-collector collectors.

    Each service host has its own (several hosts can share a process in tests); the process
    metrics describe the whole process either way."""
    registry = CollectorRegistry(auto_describe=True)
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)
    return registry


class RpcMetrics:
    """The per-method RPC series of one service host."""

    def __init__(self, registry: CollectorRegistry) -> None:
        labels = ["grpc_type", "grpc_service", "grpc_method"]
        self.started = Counter("grpc_server_started", "RPCs started on the server.", labels, registry=registry)
        self.handled = Counter(
            "grpc_server_handled", "RPCs completed on the server, whatever their status.", [*labels, "grpc_code"],
            registry=registry,
        )  # fmt: skip
        self.seconds = Histogram(
            "grpc_server_handling_seconds",
            "Time from the start of an RPC to its status, on the server.",
            labels,
            buckets=RPC_LATENCY_BUCKETS,
            registry=registry,
        )
        self._children: dict[tuple[str, str], tuple[Any, Any, Callable[[str], Any]]] = {}

    def start(self, method: str, kind: str) -> None:
        """Count a call that starts (`method` is `/package.Service/Method`)."""
        self._of(method, kind)[0].inc()

    def finish(self, method: str, kind: str, code: str, seconds: float) -> None:
        """Count a call that ended with status `code` (a `grpc.StatusCode` name) after `seconds`."""
        _, histogram, handled = self._of(method, kind)
        histogram.observe(seconds)
        handled(code).inc()

    def _of(self, method: str, kind: str) -> tuple[Any, Any, Callable[[str], Any]]:
        """Label children are looked up once per method: the hot path only increments."""
        key = (method, kind)
        found = self._children.get(key)
        if found is None:
            service, _, name = method.lstrip("/").rpartition("/")
            values = (GRPC_TYPES.get(kind, kind), service, name)
            found = (
                self.started.labels(*values),
                self.seconds.labels(*values),
                lambda code, values=values: self.handled.labels(*values, code),
            )
            self._children[key] = found
        return found


@dataclass
class MetricsEndpoint:
    """The HTTP server Prometheus scrapes (`GET /metrics`), on its own thread."""

    server: WSGIServer
    thread: threading.Thread

    @property
    def address(self) -> str:
        host, port = self.server.server_address[:2]
        return f"{host!s}:{port}"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


def serve_metrics(registry: CollectorRegistry, host: str, port: int) -> MetricsEndpoint:
    """Expose `registry` on http://host:port/metrics (port 0 picks a free one)."""
    server, thread = start_http_server(port, addr=host, registry=registry)
    return MetricsEndpoint(server, thread)
