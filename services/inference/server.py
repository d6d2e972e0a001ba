"""Bootstrap of the inference service: settings, database, links to the registry and the data
service, the repository of served models, both servicers on one server; then serve.

Triton clients connect to one address, so `inference.GRPCInferenceService` and
`atelier.inference.v1.InferenceService` share the server.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from pathlib import Path

from atelier.client.links import Links
from atelier.errors import NotFound
from atelier.inference.protocol import grpc_service_pb2, grpc_service_pb2_grpc
from atelier.inference.v1 import inference_service_pb2, inference_service_pb2_grpc
from atelier.runtime.access import DEPLOYMENT
from atelier.runtime.auth import Lookup
from atelier.runtime.database import create_engine, default_url, migrate
from atelier.runtime.metrics import service_registry
from atelier.runtime.server import BlockingRunner, GrpcService, ServiceHost, serve_main
from atelier.stack.addresses import service_address
from services.inference.control import DeploymentControl, ModelLoader
from services.inference.deployments import Deployments
from services.inference.http import HttpEndpoint
from services.inference.metrics import InferenceCollector
from services.inference.protocol import InferenceProtocol
from services.inference.repository import ModelRepository
from services.inference.rest import rest_app
from services.inference.rest_access import guard
from services.inference.rest_infer import InferRoute
from services.inference.sampling import DriftSampler, SamplingSettings
from services.inference.servicer import DeploymentServicer, ProtocolServicer
from services.inference.settings import InferenceSettings

log = logging.getLogger(__name__)
MIGRATIONS = Path(__file__).parent / "migrations"
PROTOCOL = grpc_service_pb2.DESCRIPTOR.services_by_name["GRPCInferenceService"].full_name
MANAGEMENT = inference_service_pb2.DESCRIPTOR.services_by_name["InferenceService"].full_name


@dataclass
class InferenceHost(ServiceHost):
    """A ServiceHost that also serves REST v2 over HTTP and, once serving, loads again the
    deployments stored before a restart."""

    control: DeploymentControl | None = None
    follow_interval: float = 2.0
    http: HttpEndpoint | None = None
    # The servicers, for another front end to serve too (Envoy's port, services/inference/envoy.py).
    protocol_servicer: ProtocolServicer | None = None
    management_servicer: DeploymentServicer | None = None
    _follower: asyncio.Task[None] | None = None

    async def start(self) -> str:
        if self.http is not None:
            await self.http.start()
            self.http_address = self.http.address  # published in the address file with the gRPC one
        try:
            address = await super().start()
        except BaseException:
            if self.http is not None:
                await self.http.stop()  # nothing left listening when the gRPC side cannot start
            raise
        if self.http is not None:
            log.info("inference REST v2 on http://%s/v2", self.http_address, extra={"http": self.http_address})
        if self.control is not None:
            await self.control.restore()
            self._follower = asyncio.create_task(self._follow(self.control), name="follow-aliases")
        return address

    async def stop(self) -> None:
        if self._follower is not None:
            self._follower.cancel()
            await asyncio.gather(self._follower, return_exceptions=True)
        if self.http is not None:
            await self.http.stop()
        await super().stop()

    async def _follow(self, control: DeploymentControl) -> None:
        while True:
            await asyncio.sleep(self.follow_interval)
            try:
                await control.follow_aliases()
            except Exception:  # noqa: BLE001 - following must outlive one bad round
                log.exception("following aliases failed")


def deployment_project(deployments: Deployments, runner: BlockingRunner, repository: ModelRepository) -> Lookup:
    """The access table's lookup: a KServe model name (a deployment id) to its project. A deployment being
    served answers from memory (every ModelInfer is checked: no thread hop and database query per request);
    the database answers for the others."""

    async def lookup(model: str) -> str:
        project = repository.served_project(model)
        if project is not None:
            return project
        found = await runner(deployments.by_id, model)
        if found is None:
            raise NotFound(f"Request for unknown model: '{model}' is not found")
        return found.project

    return lookup


def build(settings: InferenceSettings) -> InferenceHost:
    """Wire the inference service from its settings (migrating the database on the way)."""
    engine = create_engine(
        settings.database_url or default_url(settings.home, "inference"), settings.sqlite_synchronous
    )
    migrate(engine, MIGRATIONS, "alembic_version_inference")
    links = Links(
        lambda: settings.registry_address or service_address("registry", settings.home),
        lambda: settings.data_address or service_address("data", settings.home),
    )
    runner = BlockingRunner(settings.workers)
    deployments = Deployments(engine)
    repository = ModelRepository(
        ModelLoader(links, settings.cache_dir(), settings.torch_threads),
        lambda name, state, reason, version: deployments.set_state(name, state, reason, version),
        runner,
    )
    control = DeploymentControl(deployments, repository, links, runner)
    registry = service_registry()
    sampler = DriftSampler(
        lambda: settings.monitor_address or service_address("monitor", settings.home),
        SamplingSettings(
            rate=settings.drift_sample_rate,
            queue_size=settings.drift_queue_size,
            flush_seconds=settings.drift_flush_seconds,
            max_features=settings.drift_max_features,
        ),
        registry,
    )
    protocol = InferenceProtocol(repository, control, settings.server_name, settings.max_tensor_bytes, sampler)
    protocol_servicer = ProtocolServicer(protocol, runner)
    management = DeploymentServicer(control)
    registry.register(InferenceCollector(repository))
    host = InferenceHost(
        name="inference",
        settings=settings,
        services=[
            GrpcService(
                PROTOCOL,
                lambda s: grpc_service_pb2_grpc.add_GRPCInferenceServiceServicer_to_server(protocol_servicer, s),
            ),
            GrpcService(
                MANAGEMENT, lambda s: inference_service_pb2_grpc.add_InferenceServiceServicer_to_server(management, s)
            ),
        ],
        registry=registry,
        control=control,
        follow_interval=settings.alias_poll_seconds,
        auth_lookups={DEPLOYMENT: deployment_project(deployments, runner, repository)},
        # Per-request calls: Triton's statistics and the Prometheus series count them; failures still log.
        quiet_methods=(f"/{PROTOCOL}/ModelInfer",),
    )
    host.protocol_servicer, host.management_servicer = protocol_servicer, management
    if settings.http_port >= 0:
        app = rest_app(protocol)
        guard(app, host.access_control)
        routes = InferRoute(protocol, app, host.access_control)
        host.http = HttpEndpoint(routes, settings.host, settings.http_port, settings.shutdown_grace_seconds)
    host.on_stop.append(repository.close)
    host.on_stop.append(sampler.close)
    host.on_stop.append(links.close)
    host.on_stop.append(runner.shutdown)
    host.on_stop.append(engine.dispose)
    return host


def main() -> None:
    """The service in this process, on grpc.aio (`python -m services.inference` chooses)."""
    serve_main("inference", InferenceSettings, build)
