"""The inference service behind Envoy (`grpc_server = "envoy"`).

grpc.aio costs more CPU per call than the rest of a small inference request (docs/performance.md,
"A cheaper gRPC front end"). With this setting `python -m services.inference` starts Envoy through
pyvoy on the service's gRPC port and waits on it; Envoy embeds a Python interpreter that imports
this module and runs `app`, an ASGI application. Its lifespan builds and starts the service as
`serve_main` does (its grpc.aio server on an internal port of its own, the repository, batchers and
model instances, REST v2 on uvicorn on the HTTP port), and Envoy's HTTP/2 serves every gRPC method of
the service through `atelier.runtime.grpc_asgi`: KServe's protocol, the management API, health and
reflection, over the same servicers, with the same spans, RPC metrics and access checks.

SIGTERM or SIGINT to this process, or SIGTERM to Envoy (whose pid the address file holds), stops
Envoy, which ends the lifespan: the service stops as it would on its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from grpc_health.v1 import health, health_pb2
from grpc_reflection.v1alpha import reflection, reflection_pb2
from grpc_reflection.v1alpha._async import ReflectionServicer

from atelier.inference.protocol import grpc_service_pb2
from atelier.inference.v1 import inference_service_pb2
from atelier.runtime.grpc_asgi import GrpcAsgi, Method, Observed, methods_of
from atelier.runtime.logging import configure_logging
from atelier.runtime.memory import freeze_startup_objects
from atelier.runtime.spans import ServerSpans
from atelier.runtime.tracing import configure_tracing
from atelier.stack.addresses import host_port, reserved_port
from services.inference.settings import InferenceSettings

if TYPE_CHECKING:
    from services.inference.server import InferenceHost

log = logging.getLogger(__name__)

# Where Envoy listens, handed from the launcher to the service inside Envoy (for its address file).
ADDRESS_VARIABLE = "ATELIER_INFERENCE_ENVOY_ADDRESS"
PROTOCOL = grpc_service_pb2.DESCRIPTOR.services_by_name["GRPCInferenceService"]
MANAGEMENT = inference_service_pb2.DESCRIPTOR.services_by_name["InferenceService"]
HEALTH = health_pb2.DESCRIPTOR.services_by_name["Health"]
REFLECTION = reflection_pb2.DESCRIPTOR.services_by_name["ServerReflection"]
APP = "services.inference.envoy:app"
_NOT_GRPC = b"this port speaks gRPC; REST v2 is on the HTTP port (the address file's `http`)"


def serve_in_envoy(settings: InferenceSettings) -> int:
    """Run Envoy with the service inside until a signal stops it or Envoy exits; Envoy's exit status."""
    configure_logging("inference", settings.log_level, settings.log_format)
    with contextlib.ExitStack() as held:
        # A port of our choosing stays held until Envoy listens on it: the service's own start (its internal
        # servers bind ports of their own) and other processes could otherwise be given it meanwhile.
        port = settings.port or held.enter_context(reserved_port(settings.host))
        return _serve(settings, port, release=held.close)


def _serve(settings: InferenceSettings, port: int, release: Callable[[], None]) -> int:
    from pyvoy import PyvoyServer, StartupError

    env = {ADDRESS_VARIABLE: host_port(settings.host, port)}
    published = settings.address_file
    # Envoy starts its listener after the service's startup: the service writes its address file beside
    # the real one, and it is moved into place once Envoy listens, so that no reader of it is refused.
    staged = published.with_name(published.name + ".starting") if published is not None else None
    if staged is not None:
        env["ATELIER_INFERENCE_ADDRESS_FILE"] = str(staged)
    server = PyvoyServer(
        APP,
        address=settings.host,
        port=port,
        lifespan=True,
        loop="uvloop",
        log_level="error",
        # pyvoy hands this interpreter's sys.path to the one Envoy embeds, so it imports this same tree.
        env=env,
        stdout=None,
        stderr=None,
    )

    async def run() -> int:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        try:
            await server.start()
        except StartupError:
            log.error("Envoy exited while starting the inference service; its output above says why")
            return 1
        finally:
            release()
        if published is not None and staged is not None:
            await _publish(staged, published)
        exited = asyncio.create_task(server.wait())
        stopped = asyncio.create_task(stop.wait())
        await asyncio.wait({exited, stopped}, return_when=asyncio.FIRST_COMPLETED)
        stopped.cancel()
        await server.stop()
        return await exited or 0

    with asyncio.Runner() as runner:
        return runner.run(run())


async def _publish(staged: Path, published: Path, timeout: float = 120.0) -> None:
    """Move the address file the service wrote at `staged` to `published` (waiting for it, should the
    service's startup end after Envoy's listener opened)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not staged.exists():
        if asyncio.get_running_loop().time() > deadline:
            log.error("the inference service wrote no address file in %.0f s; %s is not published", timeout, published)
            return
        await asyncio.sleep(0.05)
    os.replace(staged, published)


class EmbeddedInference:
    """The ASGI application Envoy runs: the whole service, started and stopped by the lifespan."""

    def __init__(self) -> None:
        self.host: InferenceHost | None = None
        self.grpc: GrpcAsgi | None = None

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        assert self.grpc is not None
        for name, value in scope["headers"]:
            if name == b"content-type" and value.startswith(b"application/grpc"):
                await self.grpc(scope, receive, send)
                return
        await send({"type": "http.response.start", "status": 415, "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": _NOT_GRPC})

    async def _lifespan(self, receive: Any, send: Any) -> None:
        await receive()  # lifespan.startup
        try:
            await self._start()
        except BaseException as error:
            log.exception("the inference service did not start")
            await send({"type": "lifespan.startup.failed", "message": str(error)})
            return
        await send({"type": "lifespan.startup.complete"})
        await receive()  # lifespan.shutdown
        assert self.host is not None
        await self.host.stop()
        await send({"type": "lifespan.shutdown.complete"})

    async def _start(self) -> None:
        from services.inference.server import build

        settings = InferenceSettings()
        configure_logging("inference", settings.log_level, settings.log_format)
        configure_tracing("atelier-inference")
        # grpc.aio listens on an internal port of its own, on loopback only; Envoy's is the one published.
        host = build(settings.model_copy(update={"port": 0}))
        host.grpc_host = "127.0.0.1"
        host.published_address = os.environ.get(ADDRESS_VARIABLE, "")
        await host.start()
        self.grpc = GrpcAsgi(served_methods(host), settings.max_message_bytes, observed(host))
        self.host = host
        freeze_startup_objects()


def served_methods(host: InferenceHost) -> dict[str, Method]:
    """Every method the service's grpc.aio server has: KServe's, the management API, health, reflection."""
    names = [PROTOCOL.full_name, MANAGEMENT.full_name, health.SERVICE_NAME, reflection.SERVICE_NAME]
    return {
        **methods_of(host.protocol_servicer, PROTOCOL),
        **methods_of(host.management_servicer, MANAGEMENT),
        **methods_of(host.health, HEALTH),
        **methods_of(ReflectionServicer(names), REFLECTION),
    }


def observed(host: InferenceHost) -> Observed:
    """What the host's call interceptor does on grpc.aio: spans, RPC metrics, the log line, access checks."""
    return Observed(host.rpc_metrics, ServerSpans(host.tracer_provider), host.access_control(), host.quiet_methods)


app = EmbeddedInference()
