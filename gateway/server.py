"""`python -m gateway`: serve the REST gateway (uvicorn) and the gRPC front door side by side in one
event loop, each on its own port, and publish both addresses."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
from collections.abc import Iterator, Sequence

import uvicorn
from prometheus_client import CollectorRegistry

from atelier.runtime.auth import validate_mode
from atelier.runtime.memory import freeze_startup_objects
from atelier.runtime.metrics import RpcMetrics, serve_metrics, service_registry
from atelier.runtime.server import event_loop_factory
from atelier.runtime.settings import load_settings
from atelier.runtime.tracing import configure_tracing, shutdown_tracing
from atelier.stack.addresses import address_file, host_port, write_address_file
from gateway.app import create_app
from gateway.frontdoor import FrontDoor, LocalService
from gateway.frontdoor.routing import owner_of, stack_services
from gateway.iam.server import build as build_iam
from gateway.iam.settings import IamSettings
from gateway.settings import GatewaySettings
from gateway.upstream import Upstreams

log = logging.getLogger(__name__)


class _RestServer(uvicorn.Server):
    """uvicorn without its own signal handling: the gateway stops REST and gRPC together."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def front_door(
    settings: GatewaySettings,
    local_services: Sequence[LocalService] = (),
    registry: CollectorRegistry | None = None,
    iam_address: str = "",
) -> FrontDoor:
    """The front door of these settings (not started), serving `local_services` itself and counting its
    calls in `registry` (the RPC series every service has, `grpc_server_handled_total` & co.). With
    `iam_address` (the IAM service this process runs), IAM calls go there whatever the environment says."""
    return FrontDoor(
        Upstreams(settings.home, {"iam": iam_address} if iam_address else None),
        settings.host,
        settings.port,
        local_services=local_services,
        # The stack's services, and the IAM service the gateway runs itself.
        backends=[*stack_services(), "iam"],
        health_timeout=settings.health_timeout_seconds,
        shutdown_grace=settings.shutdown_grace_seconds,
        metrics=RpcMetrics(registry) if registry is not None else None,
        proxy=settings.front_door_proxy,
        nginx_binary=settings.nginx_binary,
    )


def iam_settings(settings: GatewaySettings) -> IamSettings:
    """The IAM service the gateway runs beside its front door: on loopback, reached through the front
    door, with access control on whenever the gateway's own interface needs it."""
    auth = "on" if validate_mode(os.environ.get("ATELIER_AUTH", "auto"), settings.host) else "off"
    return IamSettings(
        home=settings.home,
        host="127.0.0.1",
        port=settings.iam_port,
        metrics_port=-1,
        auth=auth,
        address_file=address_file(settings.home, "iam"),
    )


async def serve(settings: GatewaySettings, door: FrontDoor | None = None) -> None:
    """Serve until SIGINT/SIGTERM; the address file is written once both listen. The IAM service (the
    gateway owns identities) runs in the same process and is reached through the front door."""
    iam = build_iam(iam_settings(settings))
    # The IAM service is this process's own: ATELIER_IAM_ADDRESS, which a deployment gives every process (the
    # gateway's front door, where the others find it), must not send the front door's IAM calls back to itself.
    iam_address = str(await iam.start())
    try:
        await _serve(settings, door, iam_address)
    finally:
        await iam.stop()


async def _serve(settings: GatewaySettings, door: FrontDoor | None = None, iam_address: str = "") -> None:
    registry = service_registry()
    door = door or front_door(settings, registry=registry, iam_address=iam_address)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    address = await door.start()
    listener = socket.socket(socket.AF_INET6 if ":" in settings.host else socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind((settings.host, settings.http_port))
    host, port = listener.getsockname()[:2]
    http = host_port(host, port)
    # REST calls of the services the front door serves itself go to the front door.
    local = {owner: door.inner_address for name in door.local_names if (owner := owner_of(name)) is not None}
    if iam_address:
        local["iam"] = iam_address
    app = create_app(settings, Upstreams(settings.home, local), registry)
    # No access log (the request metrics and spans count every request) and no X-Forwarded-* rewriting
    # (the gateway reads no client address): each cost a share of a small request's CPU.
    config = uvicorn.Config(app, log_level=settings.log_level.lower(), access_log=False, proxy_headers=False)
    rest = _RestServer(config)
    task = asyncio.create_task(rest.serve(sockets=[listener]))
    metrics = serve_metrics(registry, settings.host, settings.metrics_port) if settings.metrics_port >= 0 else None
    try:
        while not rest.started and not task.done():
            await asyncio.sleep(0.05)
        if rest.started:
            freeze_startup_objects()
            if settings.address_file is not None:
                scraped = metrics.address if metrics is not None else ""
                write_address_file(settings.address_file, address, os.getpid(), metrics=scraped, http=http)
            log.info("gateway serving gRPC on %s and REST on http://%s", address, http)
            stopped = asyncio.create_task(stop.wait())
            await asyncio.wait([task, stopped], return_when=asyncio.FIRST_COMPLETED)
            stopped.cancel()
    finally:
        rest.should_exit = True
        await asyncio.gather(task, door.stop(), return_exceptions=True)
        if metrics is not None:
            metrics.stop()


def main() -> None:
    settings = load_settings(GatewaySettings, "gateway")
    logging.basicConfig(level=settings.log_level.upper())
    configure_tracing("atelier-gateway")
    try:
        with asyncio.Runner(loop_factory=event_loop_factory()) as runner:
            runner.run(serve(settings))
    finally:
        shutdown_tracing()
