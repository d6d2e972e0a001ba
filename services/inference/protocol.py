"""The KServe v2 / Triton protocol's operations, free of any transport.

The gRPC servicer (and a REST router) convert their messages to and from these calls; health,
metadata, configuration, statistics and inference mean the same whichever way they arrive.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from dataclasses import dataclass

from opentelemetry import trace
from opentelemetry.trace import SpanContext

from atelier.errors import AtelierError, DeadlineExceeded, Unavailable
from atelier.inference.v1 import resources_pb2 as pb
from services.inference.control import DeploymentControl
from services.inference.queues import Outcome, OutputTensor
from services.inference.repository import ModelRepository, Served, Status
from services.inference.requests import InferRequest, Prepared, prepare
from services.inference.sampling import DriftSampler
from services.inference.statistics import CANCELED, OTHER, REJECTED

SERVER_VERSION = "2.0.0"
EXTENSIONS = ("model_repository", "statistics", "model_configuration", "schedule_policy")


@dataclass
class InferResult:
    """What a request returns: the version that ran it and its outputs."""

    served: Served
    outputs: list[OutputTensor]


class Deliveries:
    """Outcomes that instance threads hand back to the event loop, in one wake-up of the loop per burst
    rather than one per request: `call_soon_threadsafe` writes to the loop's wake-up pipe each time, so a
    batch of 64 answered one by one would cost 64 writes and as many turns of the loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self._ready: deque[tuple[asyncio.Future[Outcome], Outcome]] = deque()
        self._lock = threading.Lock()
        self._scheduled = False

    def put(self, future: asyncio.Future[Outcome], outcome: Outcome) -> None:
        """From any thread: settle `future` with `outcome` on the loop."""
        self._ready.append((future, outcome))
        with self._lock:
            if self._scheduled:
                return  # the delivery already on its way takes this one too
            self._scheduled = True
        self.loop.call_soon_threadsafe(self._deliver)

    def _deliver(self) -> None:
        with self._lock:
            self._scheduled = False
        ready = self._ready
        while ready:
            future, outcome = ready.popleft()
            if not future.done():  # a caller that has gone cancelled it
                future.set_result(outcome)


class InferenceProtocol:
    """Operations of the v2 protocol over the repository of served models."""

    def __init__(
        self,
        repository: ModelRepository,
        control: DeploymentControl,
        name: str,
        max_tensor_bytes: int,
        sampler: DriftSampler | None = None,
    ) -> None:
        self.sampler = sampler
        self.repository = repository
        self.control = control
        self.name = name
        self.max_tensor_bytes = max_tensor_bytes
        self.live = True
        self._deliveries: Deliveries | None = None

    def ready(self) -> bool:
        """Ready when no deployment is still loading for the first time."""
        loading = pb.DEPLOYMENT_STATE_LOADING
        return all(s.state != loading or s.version for s in self.repository.known().values())

    def model_ready(self, model: str, version: str = "") -> bool:
        try:
            self.repository.get(model, version)
        except AtelierError:
            return False
        return True

    def model(self, model: str, version: str = "") -> Served:
        return self.repository.get(model, version)

    def index(self) -> dict[str, Status]:
        return self.repository.known()

    async def infer(self, request: InferRequest) -> InferResult:
        """Validate, queue, wait for the batch that carries it; a timeout withdraws it from the queue.
        The request has a span of its own, which the span of its batch links to."""
        spans = self.repository.spans
        if not spans.recording():  # no span to make: the caller's is the request's
            return await self._infer(request, trace.get_current_span().get_span_context())
        with spans.request(request.model_name, request.model_version, request.id) as span:
            result = await self._infer(request, span.get_span_context())
            span.set_attribute("inference.model_version", str(result.served.version))
            return result

    async def _infer(self, request: InferRequest, span: SpanContext) -> InferResult:
        served = self.repository.get(request.model_name, request.model_version)
        arrival = time.monotonic_ns()
        try:
            prepared = prepare(
                request.model_name, served.signature, request, served.batcher.max_batch, self.max_tensor_bytes
            )
        except AtelierError:
            served.statistics.failed(time.monotonic_ns() - arrival, OTHER)
            raise
        outcome = served.batcher.run_now(prepared, arrival, span)
        if outcome is None:
            outcome = await self._queued(served, request, prepared, arrival, span)
        if isinstance(outcome, AtelierError):
            raise outcome
        if self.sampler is not None:
            self.sampler.offer(served, prepared.arrays, outcome)
        return InferResult(served, outcome)

    async def _queued(
        self, served: Served, request: InferRequest, prepared: Prepared, arrival: int, span: SpanContext
    ) -> Outcome:
        """Queue the request and wait for the batch that carries it."""
        loop = asyncio.get_running_loop()
        deliveries = self._deliveries
        if deliveries is None or deliveries.loop is not loop:
            deliveries = self._deliveries = Deliveries(loop)
        future: asyncio.Future[Outcome] = loop.create_future()
        put = deliveries.put
        try:
            pending = served.batcher.submit(
                prepared,
                request.priority,
                request.timeout_us,
                lambda outcome: put(future, outcome),
                request.sequence,
                span,
            )
        except AtelierError as error:
            # A full queue, a model unloading, or too many sequences: the scheduler refused it.
            reason = REJECTED if isinstance(error, Unavailable) else OTHER
            served.statistics.failed(time.monotonic_ns() - arrival, reason)
            raise
        try:
            if pending.deadline_ns is None:
                return await future  # cancelling the caller cancels the future: _deliver skips it
            timeout = max(pending.deadline_ns - time.monotonic_ns(), 0) / 1e9
            return await asyncio.wait_for(asyncio.shield(future), timeout)
        except TimeoutError:
            if served.batcher.withdraw(pending):
                served.statistics.failed(time.monotonic_ns() - pending.arrival_ns, REJECTED)
                raise DeadlineExceeded("Request timeout expired", metadata={"model": request.model_name}) from None
            return await future  # already running: its result is on the way
        except asyncio.CancelledError:
            # The caller has gone (or its deadline passed): the model never sees the request.
            if served.batcher.withdraw(pending):
                served.statistics.failed(time.monotonic_ns() - pending.arrival_ns, CANCELED)
            raise
