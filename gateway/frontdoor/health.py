"""`grpc.health.v1` at the front door, answered by asking the services behind it.

The server as a whole (service "") is SERVING only when every service behind the front door is; a
service name (`atelier.data.v1.DataService`, or the stack's short name, `data`) is answered by the
service that owns it; the front door's own services are SERVING while it runs.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from atelier.errors import AtelierError
from gateway.frontdoor.routing import owner_of
from gateway.upstream import Upstreams

Status = int
"""A `grpc.health.v1` serving status."""
SERVING: Status = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING: Status = health_pb2.HealthCheckResponse.NOT_SERVING
SERVICE_UNKNOWN: Status = health_pb2.HealthCheckResponse.SERVICE_UNKNOWN
WATCH_INTERVAL_SECONDS = 1.0


class FrontDoorHealth(health_pb2_grpc.HealthServicer):  # type: ignore[misc]
    """Health of the services behind the front door (`backends`) and of its own (`local`)."""

    def __init__(self, upstreams: Upstreams, backends: Sequence[str], local: frozenset[str], timeout: float) -> None:
        self._upstreams = upstreams
        self._backends = sorted(backends)
        self.local = local
        """The front door's own services."""
        self.timeout = timeout
        self.stopping = False

    async def status(self, service: str) -> Status | None:
        """The health of `service` ("" for all), or None when the front door knows no such service."""
        if self.stopping:
            return NOT_SERVING
        if service == "":
            states = await asyncio.gather(*(self._ask(name, "") for name in self._backends))
            return SERVING if all(state == SERVING for state in states) else NOT_SERVING
        if service in self.local:
            return SERVING
        if service in self._backends:
            return await self._ask(service, "")
        owner = owner_of(service)
        if owner is None or owner not in self._backends:
            return None
        return await self._ask(owner, service)

    async def unreachable(self) -> list[str]:
        """The services behind the front door that do not answer SERVING."""
        states = await asyncio.gather(*(self._ask(name, "") for name in self._backends))
        return [name for name, state in zip(self._backends, states, strict=True) if state != SERVING]

    async def Check(
        self, request: health_pb2.HealthCheckRequest, context: grpc.aio.ServicerContext[object, object]
    ) -> health_pb2.HealthCheckResponse:
        state = await self.status(request.service)
        if state is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"unknown service {request.service!r}")
        return health_pb2.HealthCheckResponse(status=state)

    async def Watch(  # type: ignore[override]
        self, request: health_pb2.HealthCheckRequest, context: grpc.aio.ServicerContext[object, object]
    ) -> AsyncIterator[health_pb2.HealthCheckResponse]:
        last: Status | None = None
        while True:
            state = await self.status(request.service)
            current = SERVICE_UNKNOWN if state is None else state
            if current != last:
                yield health_pb2.HealthCheckResponse(status=current)
                last = current
            await asyncio.sleep(WATCH_INTERVAL_SECONDS)

    async def _ask(self, backend: str, service: str) -> Status:
        try:
            _, channel = self._upstreams.channel(backend)
            answer = await health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=service), timeout=self.timeout
            )
        except (AtelierError, grpc.aio.AioRpcError):
            return NOT_SERVING
        return SERVING if answer.status == SERVING else NOT_SERVING
