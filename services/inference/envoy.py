"""The inference service inside Envoy (`http_server = "envoy"`).

grpc.aio costs more CPU per call than the rest of a small inference request (docs/performance.md,
"A cheaper gRPC front end"). With this setting `python -m services.inference` starts Envoy through
pyvoy and waits on it; Envoy embeds a Python interpreter that imports this module and runs `app`, an
ASGI application. Its lifespan builds and starts the service exactly as `serve_main` does (the
grpc.aio server with every method, the repository, batchers and model instances), and Envoy's HTTP
port carries both REST v2 and KServe's gRPC data plane: a request whose content type is
`application/grpc` goes to `atelier.runtime.grpc_asgi` over the same `ProtocolServicer`, with the
same spans, metrics and access checks as the gRPC port; the others go to the REST app.

SIGTERM or SIGINT to this process, or SIGTERM to Envoy (whose pid the address file holds), stops
Envoy, which ends the lifespan: the service stops as it would on its own.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from typing import Any

from atelier.inference.protocol import grpc_service_pb2
from atelier.runtime.grpc_asgi import GrpcAsgi, Observed, methods_of
from atelier.runtime.logging import configure_logging
from atelier.runtime.memory import freeze_startup_objects
from atelier.runtime.spans import ServerSpans
from atelier.runtime.tracing import configure_tracing
from atelier.stack.addresses import free_port, host_port
from services.inference.settings import InferenceSettings

log = logging.getLogger(__name__)

# Where Envoy listens, handed from the launcher to the service inside Envoy (for its address file).
HTTP_ADDRESS_VARIABLE = "ATELIER_INFERENCE_ENVOY_HTTP_ADDRESS"
SERVICE = grpc_service_pb2.DESCRIPTOR.services_by_name["GRPCInferenceService"]
APP = "services.inference.envoy:app"


def serve_in_envoy(settings: InferenceSettings) -> int:
    """Run Envoy with the service inside until a signal stops it or Envoy exits; Envoy's exit status."""
    from pyvoy import PyvoyServer, StartupError

    configure_logging("inference", settings.log_level, settings.log_format)
    port = settings.http_port or free_port(settings.host)
    server = PyvoyServer(
        APP,
        address=settings.host,
        port=port,
        lifespan=True,
        loop="uvloop",
        log_level="error",
        # pyvoy hands this interpreter's sys.path to the one Envoy embeds, so it imports this same tree.
        env={HTTP_ADDRESS_VARIABLE: host_port(settings.host, port)},
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
        exited = asyncio.create_task(server.wait())
        stopped = asyncio.create_task(stop.wait())
        await asyncio.wait({exited, stopped}, return_when=asyncio.FIRST_COMPLETED)
        stopped.cancel()
        await server.stop()
        return await exited or 0

    with asyncio.Runner() as runner:
        return runner.run(run())


class EmbeddedInference:
    """The ASGI application Envoy runs: the whole service, started and stopped by the lifespan."""

    def __init__(self) -> None:
        self.host: Any = None
        self.grpc: GrpcAsgi | None = None
        self.http: Any = None

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        assert self.grpc is not None
        for name, value in scope["headers"]:
            if name == b"content-type":
                if value.startswith(b"application/grpc"):
                    await self.grpc(scope, receive, send)
                    return
                break
        await self.http(scope, receive, send)

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
        await self.host.stop()
        await send({"type": "lifespan.shutdown.complete"})

    async def _start(self) -> None:
        from services.inference.server import build

        settings = InferenceSettings()
        configure_logging("inference", settings.log_level, settings.log_format)
        configure_tracing("atelier-inference")
        host = build(settings, serve_http=False)
        host.http_address = os.environ.get(HTTP_ADDRESS_VARIABLE, "")
        await host.start()
        assert host.protocol_servicer is not None
        spans = ServerSpans(host.tracer_provider)
        observed = Observed(host.rpc_metrics, spans, host.access_control(), host.quiet_methods)
        self.grpc = GrpcAsgi(methods_of(host.protocol_servicer, SERVICE), settings.max_message_bytes, observed)
        self.http = host.http_app
        self.host = host
        freeze_startup_objects()


app = EmbeddedInference()

if __name__ == "__main__":
    sys.exit(serve_in_envoy(InferenceSettings()))
