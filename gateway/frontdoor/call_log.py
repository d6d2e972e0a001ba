"""Counting the calls nginx forwards (`gateway.frontdoor.nginx`) in the front door's RPC series.

nginx writes a line per forwarded call (`LOG_FORMAT`) to a loopback UDP port as syslog; the gateway
reads the lines and counts each call as the Python front door counts the calls it forwards itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket

import grpc

from atelier.runtime.metrics import RpcMetrics
from gateway.frontdoor.routing import route_of

LOG_TAG = "atelier_front_door"
LOG_FORMAT = (
    "$uri $upstream_http_grpc_status $upstream_trailer_grpc_status $sent_http_grpc_status $status $request_time"
)
"""A forwarded call's line: its method path, the status the service answered in its headers (an error
before any message), in its trailers, or the one nginx answered itself, the HTTP status, and seconds."""


_CODE_NAMES = {str(code.value[0]): code.name for code in grpc.StatusCode}


class CallLog:
    """Counts the calls nginx forwards, from its syslog lines, in the front door's RPC series.

    The lines wait in the socket's receive buffer and are read every `every` seconds, all at once: a
    wake-up of the event loop for each call cost the gateway about 70 us of CPU a call."""

    def __init__(self, metrics: RpcMetrics, sock: socket.socket, every: float = 0.2) -> None:
        self._metrics = metrics
        self._sock = sock
        self._every = every
        self._kinds: dict[str, str] = {}
        self._marker = f"{LOG_TAG}: ".encode()
        self._task: asyncio.Task[None] | None = None

    @classmethod
    async def open(cls, metrics: RpcMetrics, every: float = 0.2) -> tuple[CallLog, str]:
        """Listen on a loopback UDP port and read it from now on; the log and its `host:port`."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.setblocking(False)
        with contextlib.suppress(OSError):  # room for the calls of a few reading intervals
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 * 1024 * 1024)
        sock.bind(("127.0.0.1", 0))
        log = cls(metrics, sock, every)
        log._task = asyncio.create_task(log._read_every())
        host, port = sock.getsockname()[:2]
        return log, f"{host}:{port}"

    async def _read_every(self) -> None:
        while True:
            await asyncio.sleep(self._every)
            self.drain()

    def drain(self) -> None:
        """Count every line waiting."""
        while True:
            try:
                data = self._sock.recv(65536)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return  # closed
            self._count(data)

    def _count(self, data: bytes) -> None:
        at = data.find(self._marker)
        if at < 0:
            return
        fields = data[at + len(self._marker) :].decode(errors="replace").split()
        if len(fields) != 6:
            return
        path, in_headers, in_trailers, answered, http_status, seconds = fields
        kind = self._kinds.get(path)
        if kind is None:
            route = route_of(path)
            kind = self._kinds[path] = route.kind if route is not None else "stream_stream"
        status = next((s for s in (in_trailers, in_headers, answered) if s != "-"), "")
        code = _CODE_NAMES.get(status) or ("CANCELLED" if http_status == "499" else "UNKNOWN")
        try:
            elapsed = float(seconds)
        except ValueError:
            elapsed = 0.0
        self._metrics.start(path, kind)
        self._metrics.finish(path, kind, code, elapsed)

    async def close(self) -> None:
        """Count what is left and stop listening."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self.drain()
        self._sock.close()
