"""Bootstrap of the registry: settings, database, the data service client, servicer; then serve."""

from __future__ import annotations

from pathlib import Path

from atelier.client import DataClient
from atelier.client.channel import connect
from atelier.registry.v1 import registry_service_pb2, registry_service_pb2_grpc
from atelier.runtime.database import create_engine, default_url, migrate
from atelier.runtime.metrics import service_registry
from atelier.runtime.server import BlockingRunner, GrpcService, PeriodicJob, ServiceHost, serve_main
from atelier.stack.addresses import service_address
from services.registry.datalink import DataLink
from services.registry.metrics import RegistryMetrics
from services.registry.models import Models
from services.registry.runs import Tracking
from services.registry.servicer import RegistryServicer
from services.registry.settings import RegistrySettings

MIGRATIONS = Path(__file__).parent / "migrations"
SERVICE_NAME = registry_service_pb2.DESCRIPTOR.services_by_name["RegistryService"].full_name


def build(settings: RegistrySettings) -> ServiceHost:
    """Wire the registry from its settings (migrating the database on the way)."""
    engine = create_engine(settings.database_url or default_url(settings.home, "registry"), settings.sqlite_synchronous)
    migrate(engine, MIGRATIONS, "alembic_version_registry")
    # Callers' credentials are forwarded; the group writer's pin calls, made for several callers at
    # once, carry the registry's own token.
    data_address = settings.data_address or service_address("data", settings.home)
    data = DataLink(DataClient(connect(data_address, own_token=settings.token or None), address=data_address))
    tracking = Tracking(engine, data)
    models = Models(engine, data, tracking)
    runner = BlockingRunner(settings.workers)
    registry = service_registry()
    servicer = RegistryServicer(tracking, models, runner, RegistryMetrics(registry))
    host = ServiceHost(
        name="registry",
        settings=settings,
        registry=registry,
        services=[
            GrpcService(
                SERVICE_NAME,
                lambda server: registry_service_pb2_grpc.add_RegistryServiceServicer_to_server(servicer, server),
            )
        ],
        jobs=[
            PeriodicJob(
                "fail-silent-runs",
                settings.sweep_interval_seconds,
                lambda: tracking.fail_silent_runs(settings.heartbeat_timeout_seconds),
                runner,
            )
        ],
    )
    host.on_stop.append(servicer.close)
    host.on_stop.append(runner.shutdown)
    host.on_stop.append(engine.dispose)
    return host


def main() -> None:
    """`python -m services.registry`."""
    serve_main("registry", RegistrySettings, build)
