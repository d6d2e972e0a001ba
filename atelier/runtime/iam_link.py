"""A service's link to the IAM service: checking tokens and sending its writes to the audit log.

Audit records go through a bounded queue, sent in batches in the background with the service's own
token (`ATELIER_TOKEN`), so a call never waits for the audit log; when the IAM service is away the
batch is retried, and records beyond the queue's bound are dropped and counted.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import os
from collections.abc import Callable

import grpc

from atelier.errors import from_rpc_error
from atelier.iam.v1 import iam_service_pb2, iam_service_pb2_grpc, resources_pb2
from atelier.runtime.auth import AuditRecord, Identity
from atelier.runtime.timestamps import to_timestamp

log = logging.getLogger(__name__)


class IamLink:
    """Talks to the IAM service at `address` over one channel."""

    def __init__(
        self, address: str | Callable[[], str], service: str, token: str | None = None, max_queued: int = 10_000
    ) -> None:
        self._address = address
        self.service = service
        self._token = token if token is not None else os.environ.get("ATELIER_TOKEN", "")
        self._channel: grpc.aio.Channel | None = None
        self._queue: collections.deque[AuditRecord] = collections.deque()
        self._max_queued = max_queued
        self.dropped = 0
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def _stub(self) -> iam_service_pb2_grpc.IamServiceStub:
        if self._channel is None:
            # Resolved on first use: in a local stack the gateway that serves IAM starts last.
            address = self._address if isinstance(self._address, str) else self._address()
            self._channel = grpc.aio.insecure_channel(address)
        return iam_service_pb2_grpc.IamServiceStub(self._channel)

    async def authenticate(self, token: str) -> Identity:
        try:
            request = iam_service_pb2.AuthenticateRequest(token=token)
            identity = await self._stub().Authenticate(request, timeout=5.0)  # type: ignore[misc]
        except grpc.aio.AioRpcError as error:
            raise from_rpc_error(error) from None
        return Identity.from_pb(identity)

    def audit(self, record: AuditRecord) -> None:
        """Queue one record; never blocks."""
        if len(self._queue) >= self._max_queued:
            self.dropped += 1
            return
        self._queue.append(record)
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._send_loop(), name="audit-sender")
        self._wake.set()

    async def _send_loop(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            await asyncio.sleep(0.2)  # gather a batch
            while self._queue:
                batch = [self._queue[i] for i in range(min(500, len(self._queue)))]
                if not await self._send(batch):
                    await asyncio.sleep(2.0)
                    continue
                for _ in batch:
                    self._queue.popleft()

    async def _send(self, batch: list[AuditRecord]) -> bool:
        events = [
            resources_pb2.AuditEvent(
                time=to_timestamp(r.time),
                principal=r.principal,
                method=r.method,
                project=f"projects/{r.project}" if r.project else "",
                resource=r.resource,
                peer=r.peer,
                code=r.code,
                service=self.service,
            )
            for r in batch
        ]
        metadata = (("authorization", f"Bearer {self._token}"),) if self._token else ()
        try:
            await self._stub().WriteAuditEvents(  # type: ignore[misc]
                iam_service_pb2.WriteAuditEventsRequest(events=events), timeout=10.0, metadata=metadata
            )
        except grpc.aio.AioRpcError as error:
            log.warning("audit log unreachable (%d records waiting): %s", len(self._queue), error.details())
            return False
        return True

    async def flush(self, timeout: float = 5.0) -> None:
        """Send what is queued (at shutdown)."""
        deadline = asyncio.get_running_loop().time() + timeout
        while self._queue and asyncio.get_running_loop().time() < deadline:
            batch = list(self._queue)[:500]
            if await self._send(batch):
                for _ in batch:
                    self._queue.popleft()
            else:
                break

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await self.flush()
        if self._channel is not None:
            await self._channel.close(None)
