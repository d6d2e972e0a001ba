"""The front door's `grpc.aio` server: the proxy, health, reflection and the gateway's own services.

Services the gateway implements itself (added with `local_services` before start) are served here and
never forwarded; every other method of Atelier's packages goes to the service that owns it.
Reflection lists every service behind the front door and its own, from the generated modules'
descriptors, so `grpcurl` and generated clients need this one address.

With `proxy="nginx"` the Python server listens on an internal port and nginx takes the public one,
forwarding the calls of every service that has an address straight to it (`gateway.frontdoor.nginx`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import get_args

import grpc
from grpc_health.v1 import health, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from atelier.client.channel import MAX_MESSAGE_BYTES
from atelier.errors import Unavailable
from atelier.runtime.metrics import RpcMetrics
from atelier.stack.addresses import host_port
from gateway.frontdoor.health import FrontDoorHealth
from gateway.frontdoor.nginx import NginxFrontDoor, find_nginx, forwards_for
from gateway.frontdoor.proxy import Proxy
from gateway.frontdoor.routing import known_services, owner_of, stack_services
from gateway.settings import FrontDoorProxy
from gateway.upstream import Upstreams

log = logging.getLogger(__name__)


PROXIES: tuple[FrontDoorProxy, ...] = get_args(FrontDoorProxy)


@dataclass(frozen=True)
class LocalService:
    """A service the front door serves itself: its full name and how to add its servicer to a server."""

    full_name: str
    register: Callable[[grpc.aio.Server], None]


class FrontDoor:
    """One gRPC address for the services behind it (reached through `upstreams`) and `local_services`."""

    def __init__(
        self,
        upstreams: Upstreams,
        host: str = "127.0.0.1",
        port: int = 0,
        local_services: Sequence[LocalService] = (),
        backends: Sequence[str] | None = None,
        health_timeout: float = 1.0,
        shutdown_grace: float = 5.0,
        metrics: RpcMetrics | None = None,
        proxy: FrontDoorProxy | str = "python",
        nginx_binary: str = "nginx",
    ) -> None:
        if proxy not in PROXIES:
            raise ValueError(f"front door proxy {proxy!r} is not one of {', '.join(PROXIES)}")
        self._nginx_binary = find_nginx(nginx_binary) if proxy in ("nginx", "auto") else None
        if proxy == "nginx" and self._nginx_binary is None:
            raise RuntimeError(
                f"the front door proxy is nginx but {nginx_binary!r} was not found (on PATH or in /usr/sbin); "
                "install Debian's nginx or set ATELIER_GATEWAY_FRONT_DOOR_PROXY=python"
            )
        self.proxy = "nginx" if self._nginx_binary else "python"
        """Which proxy serves the public address: `nginx` or `python`."""
        self.nginx: NginxFrontDoor | None = None
        """nginx, while it serves the public address."""
        self._upstreams = upstreams
        self._port = port
        self._host = host
        self._local = list(local_services)
        self._grace = shutdown_grace
        self._metrics = metrics
        self.backends = sorted(backends if backends is not None else stack_services())
        """The stack services behind the front door (`data`, `registry`, ...)."""
        local_names = frozenset(s.full_name for s in self._local)
        self.proxied = [
            s.full_name
            for s in known_services()
            if owner_of(s.full_name) in self.backends and s.full_name not in local_names
        ]
        """The full names of the services forwarded to the stack's services."""
        self.health = FrontDoorHealth(upstreams, self.backends, local_names, health_timeout)
        self.address = ""
        """The public address."""
        self.inner_address = ""
        """The Python server's address (the public one without nginx)."""
        self._server: grpc.aio.Server | None = None

    @property
    def local_names(self) -> frozenset[str]:
        """The full names of the services the front door serves itself."""
        return frozenset(s.full_name for s in self._local)

    def add_local(self, service: LocalService) -> None:
        """Serve `service` at the front door instead of forwarding it (before `start`)."""
        if self._server is not None:
            raise RuntimeError(f"the front door already serves; {service.full_name} must be added before start")
        self._local.append(service)
        self.proxied = [name for name in self.proxied if name != service.full_name]
        self.health.local = frozenset(s.full_name for s in self._local)

    async def start(self) -> str:
        """Bind, start serving and return the bound `host:port`."""
        server = grpc.aio.server(
            options=[
                ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
                ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
                ("grpc.so_reuseport", 0),
            ]
        )
        local_names = frozenset(s.full_name for s in self._local)
        for service in self._local:
            service.register(server)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, server)
        names = [*self.proxied, *local_names, health.SERVICE_NAME, reflection.SERVICE_NAME]
        reflection.enable_server_reflection(names, server)
        server.add_generic_rpc_handlers([Proxy(self._upstreams, frozenset(self.backends), local_names, self._metrics)])
        port = server.add_insecure_port("127.0.0.1:0" if self._nginx_binary else host_port(self._host, self._port))
        await server.start()
        self._server = server
        if self._nginx_binary:
            self.inner_address = f"127.0.0.1:{port}"
            self.nginx = NginxFrontDoor(
                self._nginx_binary,
                self._host,
                self._port,
                self.inner_address,
                forwards_for(self._addresses()),
                sorted(local_names),
                self._grace,
                self._metrics,
            )
            try:
                self.address = await self.nginx.start()
            except BaseException:
                self.nginx = None
                await self.stop()
                raise
        else:
            self.address = self.inner_address = host_port(self._host, port)
        log.info("front door (%s) serving on %s for %s", self.proxy, self.address, ", ".join(self.backends))
        return self.address

    def _addresses(self) -> dict[str, str]:
        """The backends nginx can forward to now: those with an address (the services served here go to
        the Python server by a longer path prefix)."""
        found = {}
        for service in self.backends:
            try:
                found[service] = self._upstreams.address(service)
            except Unavailable:
                continue  # the Python server answers for it (UNAVAILABLE naming it, or a later address)
        return found

    async def stop(self) -> None:
        """Answer NOT_SERVING, refuse new calls and give calls in flight the grace period."""
        if self._server is None:
            return
        server, self._server = self._server, None
        self.health.stopping = True
        nginx, self.nginx = self.nginx, None
        if nginx is not None:
            await nginx.stop()
        await server.stop(self._grace)
