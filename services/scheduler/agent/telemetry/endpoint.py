"""Wiring of an agent's telemetry: the source for its discovery, the collector, the sampler thread, the
`/metrics` endpoint, a Prometheus target file when the agent belongs to a local stack, and the usage
reports to the monitor."""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from atelier.client.monitor import MonitorClient
from atelier.monitor.v1.monitor_service_pb2 import UsageSample
from atelier.runtime.metrics import MetricsEndpoint, serve_metrics, service_registry
from atelier.stack import prometheus
from atelier.stack.addresses import service_address
from services.scheduler.agent.discovery import GpuDiscovery, NvmlDiscovery
from services.scheduler.agent.settings import AgentSettings
from services.scheduler.agent.telemetry.exporter import DcgmCollector, Holder
from services.scheduler.agent.telemetry.nvml import NvmlTelemetry
from services.scheduler.agent.telemetry.sampler import Sampler
from services.scheduler.agent.telemetry.samples import TelemetrySource
from services.scheduler.agent.telemetry.simulated import SimulatedTelemetry
from services.scheduler.agent.telemetry.usage import UsageMeter, UsageReporter

log = logging.getLogger(__name__)
REPORT_ON_EXIT_SECONDS = 10.0
"""How long a stopping agent waits for its last usage report to reach the monitor."""


def source_for(discovery: GpuDiscovery, busy_utilization: float) -> TelemetrySource:
    """NVML samples for NVML discovery; simulated ones for a declared inventory."""
    if isinstance(discovery, NvmlDiscovery):
        return NvmlTelemetry()
    return SimulatedTelemetry(discovery.inventory().cards, busy_utilization)


class MonitorLink:
    """Sends usage reports to the monitor, finding it when first needed (it may start after the agent)."""

    def __init__(self, settings: AgentSettings) -> None:
        self.settings = settings
        self.client: MonitorClient | None = None

    def report(self, node: str, report_id: str, samples: list[UsageSample]) -> object:
        if self.client is None:
            address = self.settings.monitor_address or service_address("monitor", self.settings.home)
            self.client = MonitorClient.at(address)
        return self.client.report_usage(node, report_id, samples)


@dataclass
class Telemetry:
    sampler: Sampler
    endpoint: MetricsEndpoint
    target_file: Path | None
    reporting: threading.Thread

    def stop(self) -> None:
        """After the stop event: let the last usage report go out, then close the endpoint."""
        self.reporting.join(timeout=REPORT_ON_EXIT_SECONDS)
        self.endpoint.stop()
        if self.target_file is not None:
            self.target_file.unlink(missing_ok=True)


def start_telemetry(
    settings: AgentSettings, discovery: GpuDiscovery, holders: Callable[[], dict[int, Holder]], stop: threading.Event
) -> Telemetry | None:
    """Sample every card each interval and serve the series; None when metrics are turned off."""
    if settings.metrics_port < 0:
        return None
    source = source_for(discovery, settings.simulated_busy_utilization)
    collector = DcgmCollector(
        socket.gethostname(),
        source.driver_version,
        source.simulated,
        settings.idle_utilization_percent,
        settings.idle_after_seconds,
    )
    registry = service_registry()
    registry.register(collector)
    meter = UsageMeter(f"nodes/{settings.node_id}", source.simulated, max_gap_s=5 * settings.telemetry_interval_seconds)
    sampler = Sampler(source, collector, holders, settings.telemetry_interval_seconds, [meter.observe])
    sampler.sample_once()
    sampler.start(stop)
    reporter = UsageReporter(meter, MonitorLink(settings).report, settings.usage_report_interval_seconds)
    reporting = reporter.start(stop)
    endpoint = serve_metrics(registry, settings.metrics_host, settings.metrics_port)
    port = endpoint.address.rpartition(":")[2]
    reachable = f"{settings.address or '127.0.0.1'}:{port}"
    target = prometheus.write_targets(
        settings.home, f"agent-{settings.node_id}", reachable, job="agent", labels={"node": settings.node_id}
    )
    log.info("GPU metrics on http://%s/metrics (%s)", reachable, "simulated" if source.simulated else "NVML")
    return Telemetry(sampler, endpoint, target, reporting)
