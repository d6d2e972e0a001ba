"""The REST v2 endpoint: uvicorn serving the ASGI app on its own port, in the service's event
loop (so the handlers call `InferenceProtocol` exactly as the gRPC servicer does).

The socket is bound here (port 0 picks a free one) and handed to uvicorn, so the bound address is
known before the first request; uvicorn leaves SIGTERM and SIGINT to the service host.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Iterator
from typing import Any

import uvicorn


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield  # the service host handles the signals and stops this server


class HttpEndpoint:
    """One uvicorn server, started and stopped with the service."""

    def __init__(self, app: Any, host: str, port: int, grace_seconds: float = 5.0) -> None:
        self.app = app
        self.host = host
        self.port = port
        self.grace_seconds = grace_seconds
        self.address = ""
        self._server: _Server | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> str:
        """Bind, serve, and return the bound `host:port`."""
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        # IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY only on sockets whose proto says TCP, and accepted
        # connections inherit it. Without it uvicorn's two writes (headers, then body) met Nagle and the
        # client's delayed ACK: every response waited ~40 ms.
        sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self.port))
        sock.listen(1024)
        sock.setblocking(False)
        config = uvicorn.Config(
            self.app,
            log_level="warning",
            access_log=False,
            lifespan="off",
            timeout_keep_alive=30,
            # Requests still waiting then (say, for a batch to fill) are cancelled: stopping never hangs.
            timeout_graceful_shutdown=max(int(self.grace_seconds), 1),
        )
        server = _Server(config)
        self._server = server
        self._task = asyncio.create_task(server.serve(sockets=[sock]), name="inference-http")
        while not server.started:
            if self._task.done():
                self._task.result()  # raises why it could not start
                raise RuntimeError("the HTTP server stopped while starting")
            await asyncio.sleep(0.01)
        host, port = sock.getsockname()[:2]
        self.address = f"[{host}]:{port}" if family == socket.AF_INET6 else f"{host}:{port}"
        return self.address

    async def stop(self) -> None:
        if self._server is None or self._task is None:
            return
        self._server.should_exit = True
        await asyncio.gather(self._task, return_exceptions=True)
        self._server = None
        self._task = None
