"""Bootstrap of the monitor: settings, database, servicer; then serve."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from atelier.client.channel import connect
from atelier.client.links import Links
from atelier.client.registry import RegistryClient
from atelier.monitor.v1 import monitor_service_pb2, monitor_service_pb2_grpc
from atelier.runtime.database import create_engine, default_url, migrate
from atelier.runtime.metrics import service_registry
from atelier.runtime.server import BlockingRunner, GrpcService, PeriodicJob, ServiceHost, serve_main
from atelier.stack.addresses import service_address
from services.monitor.accounting import Accounting
from services.monitor.drifts import DriftMonitor, WindowSettings
from services.monitor.metrics import DriftCollector
from services.monitor.publisher import UsagePublisher
from services.monitor.references import ReferenceLoader
from services.monitor.sample_store import SampleStore
from services.monitor.servicer import MonitorServicer
from services.monitor.settings import MonitorSettings

MIGRATIONS = Path(__file__).parent / "migrations"
SERVICE_NAME = monitor_service_pb2.DESCRIPTOR.services_by_name["MonitorService"].full_name


def build(settings: MonitorSettings) -> ServiceHost:
    """Wire the monitor from its settings (migrating the database on the way)."""
    engine = create_engine(settings.database_url or default_url(settings.home, "monitor"), settings.sqlite_synchronous)
    migrate(engine, MIGRATIONS, "alembic_version_monitor")
    accounting = Accounting(engine)
    runner = BlockingRunner(settings.workers)
    # Storing samples and comparing windows is background work: at a lower priority it takes the CPU
    # that inference (often on the same machine) leaves idle. Two threads, so that a long comparison
    # (or a reference being read) does not hold up storing the samples inference is sending.
    drift_runner = BlockingRunner(2, nice=settings.drift_nice, name="monitor-drift")
    links = Links(
        lambda: settings.registry_address or service_address("registry", settings.home),
        lambda: settings.data_address or service_address("data", settings.home),
    )
    drift = DriftMonitor(
        ReferenceLoader(links, settings.drift_reference_rows, settings.drift_max_file_bytes),
        WindowSettings(
            settings.drift_window_rows, settings.drift_window_seconds, settings.drift_min_rows, settings.drift_share
        ),
        store=SampleStore(engine),
    )
    drift.restore()
    servicer = MonitorServicer(accounting, drift, runner, drift_runner)

    def registry_client() -> RegistryClient:
        # The monitor's own token: publishing is its bookkeeping, on no caller's behalf.
        address = settings.registry_address or service_address("registry", settings.home)
        return RegistryClient(connect(address, token=settings.token), address=address)

    publisher = UsagePublisher(accounting, registry_client)
    registry = service_registry()
    registry.register(DriftCollector(drift))
    host = ServiceHost(
        name="monitor",
        settings=settings,
        services=[
            GrpcService(
                SERVICE_NAME,
                lambda server: monitor_service_pb2_grpc.add_MonitorServiceServicer_to_server(servicer, server),
            )
        ],
        jobs=[
            PeriodicJob(
                "forget-reports",
                3600.0,
                lambda: accounting.forget_reports(timedelta(days=settings.report_memory_days)),
                runner,
            ),
            PeriodicJob("drift", settings.drift_interval_seconds, drift.refresh, drift_runner),
            PeriodicJob("publish-usage", settings.usage_publish_seconds, publisher.publish, runner),
        ],
        registry=registry,
    )
    host.on_stop.append(runner.shutdown)
    host.on_stop.append(drift_runner.shutdown)
    host.on_stop.append(links.close)
    host.on_stop.append(publisher.close)
    host.on_stop.append(engine.dispose)
    return host


def main() -> None:
    """`python -m services.monitor`."""
    serve_main("monitor", MonitorSettings, build)
