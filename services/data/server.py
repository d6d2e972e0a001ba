"""Bootstrap of the data service: settings, database, object store, servicer; then serve."""

from __future__ import annotations

from pathlib import Path

from atelier.data.v1 import data_service_pb2
from atelier.runtime.database import create_engine, default_url, migrate
from atelier.runtime.memory import keep_freed_buffers
from atelier.runtime.metrics import service_registry
from atelier.runtime.objectstore import open_object_store
from atelier.runtime.server import BlockingRunner, GrpcService, ServiceHost, serve_main
from services.data import uploads
from services.data.catalog import Catalog
from services.data.content import Content
from services.data.metrics import StorageCollector, TransferMetrics
from services.data.servicer import DataServicer
from services.data.settings import DataSettings
from services.data.store import DataStore

MIGRATIONS = Path(__file__).parent / "migrations"
SERVICE_NAME = data_service_pb2.DESCRIPTOR.services_by_name["DataService"].full_name


def build(settings: DataSettings) -> ServiceHost:
    """Wire the data service from its settings (migrating the database on the way)."""
    engine = create_engine(settings.database_url or default_url(settings.home, "data"), settings.sqlite_synchronous)
    migrate(engine, MIGRATIONS, "alembic_version_data")
    store = DataStore(engine)
    objects = open_object_store(settings.object_store or str(settings.home / "objects"))
    content = Content(objects, store, settings.pack_target_bytes, settings.manifest_cache_entries)
    runner = BlockingRunner(settings.workers)
    registry = service_registry()
    registry.register(StorageCollector(store))
    servicer = DataServicer(Catalog(store, content), settings, runner, TransferMetrics(registry))
    host = ServiceHost(
        name="data",
        settings=settings,
        registry=registry,
        services=[GrpcService(SERVICE_NAME, lambda server: uploads.register(servicer, server))],
        # Successful reads of one resource (GetProject, GetDataset, ...) log at DEBUG: the JSON line was
        # a tenth of such a call's CPU; the RPC metrics count them and failures still log at INFO.
        quiet_methods=(f"/{SERVICE_NAME}/Get",),
    )
    host.on_stop.append(runner.shutdown)
    host.on_stop.append(content.close)
    host.on_stop.append(engine.dispose)
    return host


def main() -> None:
    """`python -m services.data`."""
    # Uploads arrive as messages of several MiB: reuse their freed buffers rather than fault in fresh ones.
    keep_freed_buffers()
    serve_main("data", DataSettings, build)
