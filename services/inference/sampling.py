"""Samples of served requests' inputs and predictions, sent to the monitor for drift, off the request path.

A request that succeeded is offered to the sampler: with probability `rate` it is appended, as references
to the arrays it already has, to a bounded queue (when the queue is full the sample is dropped and
counted; the request never waits). A task on the server's event loop wakes every `flush_seconds`, takes
what is queued, turns it into rows (each input flattened and concatenated in the signature's order; the
prediction is the first output itself when it holds one value per row, else the index of its largest
value) and sends them to the monitor's WriteDriftSamples in messages of at most `batch_rows` rows. A
monitor that cannot be reached costs the samples of that send (counted as `send_failed`), never a request.

The sender is a task, not a thread: a second Python thread in the server has to take the GIL from the
event loop serving requests (every switch interval while it works, and it can be descheduled holding it
on a busy machine), whereas the task's work (about 1.5 ms per 1,000 rows) runs between requests once per
`flush_seconds`.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import grpc
import numpy as np
import numpy.typing as npt
from prometheus_client import CollectorRegistry, Counter

from atelier.client.channel import MAX_MESSAGE_BYTES
from atelier.client.credentials import configured_token
from atelier.errors import AtelierError
from atelier.monitor.v1 import monitor_service_pb2 as monitor_pb
from atelier.monitor.v1 import monitor_service_pb2_grpc as monitor_grpc
from services.inference.queues import OutputTensor
from services.inference.repository import Served

log = logging.getLogger(__name__)
NOT_SAMPLED_DATATYPES = frozenset({"BYTES", "BF16"})
"""Strings are not numbers, and BF16 travels as 16-bit words numpy cannot read as values."""
SEND_TIMEOUT_SECONDS = 5.0
WARN_EVERY_SECONDS = 60.0


@dataclass(frozen=True)
class SamplingSettings:
    rate: float = 1.0
    """Share of successful requests sampled (0 turns sampling off)."""
    queue_size: int = 1000
    """Requests waiting to be sent, beyond which samples are dropped."""
    batch_rows: int = 1000
    """Rows per WriteDriftSamples, at most."""
    flush_seconds: float = 1.0
    """Longest a sample waits before it is sent."""
    max_features: int = 1024
    """Requests with more input values per row than this are not sampled (a large image is not a
    table of features; bounding it also bounds the memory the queue holds)."""


Queued = tuple[Served, Sequence[npt.NDArray[Any]], OutputTensor, int]
"""A sampled request as the request path queues it: the model, its inputs, its first output, its rows."""


class DriftSampler:
    """The bounded queue and the event-loop task that empties it into the monitor."""

    def __init__(
        self,
        monitor_address: Callable[[], str],
        settings: SamplingSettings,
        registry: CollectorRegistry,
        chance: Callable[[], float] = random.random,
    ) -> None:
        self.settings = settings
        self._monitor_address = monitor_address
        self._chance = chance
        self._pending: deque[Queued] = deque()
        self._task: asyncio.Task[None] | None = None
        self._channel: grpc.aio.Channel | None = None
        self._metadata: tuple[tuple[str, str], ...] = ()
        self._last_warning = -WARN_EVERY_SECONDS
        self.sent = Counter(
            "atelier_inference_drift_samples_sent", "Sampled rows the monitor accepted.", registry=registry
        )
        self.dropped = Counter(
            "atelier_inference_drift_samples_dropped",
            "Sampled rows dropped: queue_full (the request went on without waiting) or send_failed.",
            ["reason"],
            registry=registry,
        )
        self._dropped_full = self.dropped.labels("queue_full")
        self._dropped_send = self.dropped.labels("send_failed")

    @property
    def enabled(self) -> bool:
        return self.settings.rate > 0

    def offer(self, served: Served, inputs: Sequence[npt.NDArray[Any]], outputs: Sequence[OutputTensor]) -> None:
        """Maybe queue the request's inputs and outputs (on the event loop); never blocks."""
        if self.settings.rate <= 0 or not outputs or (self.settings.rate < 1 and self._chance() >= self.settings.rate):
            return
        rows = len(inputs[0]) if served.signature.batched and inputs and inputs[0].ndim else 1
        if sum(a.size for a in inputs) > rows * self.settings.max_features:
            return
        if len(self._pending) >= self.settings.queue_size:
            self._dropped_full.inc(rows)
            return
        self._pending.append((served, inputs, outputs[0], rows))
        if self._task is None:  # the sender starts with the first sample, on the loop that serves
            self._task = asyncio.get_running_loop().create_task(self._run(), name="drift-sampler")

    async def close(self) -> None:
        """Stop the sender, send what is queued (one last try) and close the channel."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        await self.flush()  # nothing is queued meanwhile: the server has stopped serving
        if self._channel is not None:
            await self._channel.close(None)
            self._channel = None

    async def _run(self) -> None:
        # The sender wakes on its own clock, not per request: a request's append wakes nothing.
        while True:
            await asyncio.sleep(self.settings.flush_seconds)
            await self.flush()

    async def flush(self) -> None:
        """Send what is queued now, at most `batch_rows` rows per call. What comes while it sends waits for
        the next flush: sending it at once would make a stream of small calls, each costing the monitor
        a transaction."""
        waiting = len(self._pending)
        while waiting > 0:
            batch: list[Queued] = []
            rows = 0
            while waiting > 0 and rows < self.settings.batch_rows:
                queued = self._pending.popleft()
                batch.append(queued)
                rows += queued[3]
                waiting -= 1
            await self._send(batch, rows)

    async def _send(self, batch: list[Queued], rows: int) -> None:
        try:
            messages = to_messages(batch)
            if messages:
                request = monitor_pb.WriteDriftSamplesRequest(samples=messages)
                response = await self._stub().WriteDriftSamples(  # type: ignore[misc]
                    request, timeout=SEND_TIMEOUT_SECONDS, metadata=self._metadata
                )
                self.sent.inc(response.accepted_rows)
        except asyncio.CancelledError:
            self._dropped_send.inc(rows)
            raise
        except grpc.aio.AioRpcError as error:
            self._failed(rows, f"{error.code().name}: {error.details()}")
        except (AtelierError, ValueError) as error:
            self._failed(rows, str(error))

    def _stub(self) -> monitor_grpc.MonitorServiceStub:
        if self._channel is None:
            # Resolved on first use: in a local stack the monitor may start after inference.
            address = self._monitor_address()
            options = [("grpc.max_send_message_length", MAX_MESSAGE_BYTES)]
            self._channel = grpc.aio.insecure_channel(address, options=options)
            token = configured_token()
            self._metadata = (("authorization", f"Bearer {token}"),) if token else ()
        return monitor_grpc.MonitorServiceStub(self._channel)

    def _failed(self, rows: int, reason: str) -> None:
        self._dropped_send.inc(rows)
        now = time.monotonic()
        if now - self._last_warning >= WARN_EVERY_SECONDS:
            self._last_warning = now
            log.warning("drift samples not sent to the monitor (%d rows dropped): %s", rows, reason)


def _numeric(served: Served, output: OutputTensor) -> bool:
    if output.spec.datatype.name in NOT_SAMPLED_DATATYPES:
        return False
    return all(spec.datatype.name not in NOT_SAMPLED_DATATYPES for spec in served.signature.inputs)


def to_messages(batch: Sequence[Queued]) -> list[monitor_pb.DriftSamples]:
    """One DriftSamples per deployment and model version, rows in the order they were served.

    The sender holds the GIL the event loop serving requests needs, so the rows are converted a group at
    a time in a few numpy calls rather than per request or per value."""
    grouped: dict[tuple[str, str, str], list[Queued]] = {}
    for queued in batch:
        served = queued[0]
        grouped.setdefault((served.project, served.deployment_id, served.version_name), []).append(queued)
    messages = []
    for group in grouped.values():
        served, inputs, output, rows = group[-1]
        if not _numeric(served, output):
            continue
        # Rows of one version have one width, unless its inputs have dynamic dimensions: then the
        # latest shape's rows go.
        shape = _row_shape(inputs, rows)
        group = [q for q in group if _row_shape(q[1], q[3]) == shape]
        messages.append(
            _message(
                f"projects/{served.project}/deployments/{served.deployment_id}",
                served.version_name,
                feature_names([spec.name for spec in served.signature.inputs], inputs, rows),
                _feature_rows(group),
                predictions(group),
            )
        )
    return messages


def _row_shape(inputs: Sequence[npt.NDArray[Any]], rows: int) -> tuple[int, ...]:
    return tuple(a.size // rows for a in inputs)


def _feature_rows(group: Sequence[Queued]) -> npt.NDArray[np.float64]:
    """Each input's rows stacked over the requests (one copy), the inputs side by side."""
    per_input = [np.concatenate([q[1][i].reshape(q[3], -1) for q in group]) for i in range(len(group[0][1]))]
    return np.concatenate(per_input, axis=1, dtype=np.float64, casting="unsafe")


def feature_names(input_names: Sequence[str], inputs: Sequence[npt.NDArray[Any]], rows: int) -> list[str]:
    """`NAME[i]` for each flattened value of each input, as the request's inputs are shaped."""
    names: list[str] = []
    for index, array in enumerate(inputs):
        name = input_names[index] if len(input_names) == len(inputs) else f"input__{index}"
        names.extend(f"{name}[{i}]" for i in range(array.size // rows))
    return names


def predictions(group: Sequence[Queued]) -> npt.NDArray[np.float64]:
    """The first output per row when it is one value, else the index of the row's largest value."""
    dtype = group[-1][2].spec.datatype.numpy
    row_bytes = len(group[-1][2].raw) // group[-1][3]
    rows = sum(q[3] for q in group)
    if all(len(q[2].raw) == q[3] * row_bytes for q in group):  # one width: one buffer
        values = np.frombuffer(b"".join(q[2].raw for q in group), dtype=dtype).reshape(rows, -1)
    else:
        values = np.concatenate([np.frombuffer(q[2].raw, dtype=dtype).reshape(q[3], -1) for q in group])
    chosen = values[:, 0] if values.shape[1] == 1 else np.argmax(values, axis=1)
    return np.asarray(chosen, dtype=np.float64)


def _message(
    deployment: str,
    model_version: str,
    names: list[str],
    features: npt.NDArray[np.float64],
    predicted: npt.NDArray[np.float64],
) -> monitor_pb.DriftSamples:
    """The message parsed from its wire form, whose packed doubles are the arrays' little-endian bytes:
    filling the repeated fields from Python floats (`tolist()`) held the GIL about three times longer."""
    head = monitor_pb.DriftSamples(deployment=deployment, model_version=model_version, feature_names=names)
    wire = (
        head.SerializeToString()
        + _packed_doubles(FEATURES_FIELD, features)
        + _packed_doubles(PREDICTIONS_FIELD, predicted)
    )
    return monitor_pb.DriftSamples.FromString(wire)


FEATURES_FIELD = monitor_pb.DriftSamples.FEATURES_FIELD_NUMBER
PREDICTIONS_FIELD = monitor_pb.DriftSamples.PREDICTIONS_FIELD_NUMBER
LENGTH_DELIMITED = 2


def _packed_doubles(field_number: int, values: npt.NDArray[np.float64]) -> bytes:
    """A packed repeated double field: its key, the payload's length, the values as little-endian float64."""
    payload = np.ascontiguousarray(values, dtype="<f8").tobytes()
    return _varint(field_number << 3 | LENGTH_DELIMITED) + _varint(len(payload)) + payload


def _varint(value: int) -> bytes:
    encoded = bytearray()
    while value >= 0x80:
        encoded.append(value & 0x7F | 0x80)
        value >>= 7
    encoded.append(value)
    return bytes(encoded)
