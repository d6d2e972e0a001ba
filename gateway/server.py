"""`python -m gateway`: serve the REST gateway with uvicorn and publish its address."""

from __future__ import annotations

import asyncio
import logging
import os
import socket

import uvicorn

from atelier.runtime.tracing import configure_tracing, shutdown_tracing
from atelier.stack.addresses import write_address_file
from gateway.app import create_app
from gateway.settings import GatewaySettings

log = logging.getLogger(__name__)


async def serve(settings: GatewaySettings) -> None:
    """Serve until SIGINT/SIGTERM; the address file is written once the socket listens."""
    listener = socket.socket(socket.AF_INET6 if ":" in settings.host else socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind((settings.host, settings.port))
    host, port = listener.getsockname()[:2]
    address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    config = uvicorn.Config(create_app(settings), log_level=settings.log_level.lower(), access_log=False)
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[listener]))
    while not server.started and not task.done():
        await asyncio.sleep(0.05)
    if server.started:
        if settings.address_file is not None:
            write_address_file(settings.address_file, address, os.getpid(), http=address)
        log.info("gateway serving on http://%s", address)
    await task


def main() -> None:
    settings = GatewaySettings()
    logging.basicConfig(level=settings.log_level.upper())
    configure_tracing("atelier-gateway")
    try:
        asyncio.run(serve(settings))
    finally:
        shutdown_tracing()
