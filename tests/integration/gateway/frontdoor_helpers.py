"""A stand-in for a service behind the front door that records what reaches it, for what only the
service can see: the deadline it was given, the metadata, and whether the call was cancelled."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import grpc

from atelier.scheduler.v1 import resources_pb2 as pb
from atelier.scheduler.v1 import scheduler_service_pb2 as rpc

SERVICE = "atelier.scheduler.v1.SchedulerService"


@dataclass
class Seen:
    """One call as the service saw it."""

    method: str
    metadata: dict[str, str]
    time_remaining: float | None


@dataclass
class RecordingScheduler:
    """GetJob answers at once; ReadJobLogs sends one line and then waits until it is cancelled."""

    seen: list[Seen] = field(default_factory=list)
    cancelled: threading.Event = field(default_factory=threading.Event)
    address: str = ""
    _server: Any = None

    async def start(self) -> str:
        server = grpc.aio.server()
        handlers = {
            "GetJob": grpc.unary_unary_rpc_method_handler(
                self.get_job, rpc.GetJobRequest.FromString, pb.Job.SerializeToString
            ),
            "ReadJobLogs": grpc.unary_stream_rpc_method_handler(
                self.read_logs, rpc.ReadJobLogsRequest.FromString, rpc.ReadJobLogsResponse.SerializeToString
            ),
        }
        server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler(SERVICE, handlers)])
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        self._server = server
        self.address = f"127.0.0.1:{port}"
        return self.address

    async def stop(self) -> None:
        await self._server.stop(0)

    def _record(self, method: str, context: grpc.aio.ServicerContext[Any, Any]) -> None:
        metadata = {k: v for k, v in context.invocation_metadata() or () if isinstance(v, str)}
        self.seen.append(Seen(method, metadata, context.time_remaining()))

    async def get_job(self, request: rpc.GetJobRequest, context: grpc.aio.ServicerContext[Any, Any]) -> pb.Job:
        self._record("GetJob", context)
        return pb.Job(name=request.name)

    async def read_logs(
        self, request: rpc.ReadJobLogsRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[rpc.ReadJobLogsResponse]:
        self._record("ReadJobLogs", context)
        yield rpc.ReadJobLogsResponse(lines=[pb.LogLine(text="epoch 1")])
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            self.cancelled.set()
            raise
