"""Samples of served requests' inputs and predictions, sent to the monitor for drift, off the request path.

A request that succeeded is offered to the sampler: with probability `rate` its rows are copied into
arrays kept per served model version (each input flattened and concatenated in the signature's order,
and the first output's values), at most `queue_size` requests' worth (beyond, the sample is dropped and
counted; the request never waits). A task on the server's event loop wakes every `flush_seconds`, takes
the arrays queued, and sends them to the monitor's WriteDriftSamples in messages of at most `batch_rows`
rows, the prediction being the first output itself when it holds one value per row, else the index of its
largest value. A monitor that cannot be reached costs the samples of that send (counted as
`send_failed`), never a request.

The sender is a task, not a thread: a second Python thread in the server has to take the GIL from the
event loop serving requests (every switch interval while it works, and it can be descheduled holding it
on a busy machine), whereas the task's work (about 0.2 ms per 1,000 rows) runs between requests once per
`flush_seconds`."""

from __future__ import annotations

import asyncio
import logging
import random
import time
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
from services.inference.sample_rows import SampledRows

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
        self._rows: dict[int, SampledRows] = {}
        """Rows queued per served model version (by the object's id; it holds the object)."""
        self._queued = 0
        self._not_numeric: dict[int, Served] = {}
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
        if rows == 0:
            return
        output = outputs[0]
        queued = self._rows.get(id(served))
        fits = queued is not None and queued.fits(inputs, output.raw, rows)
        if not fits and sum(a.size for a in inputs) > rows * self.settings.max_features:
            return
        if self._queued >= self.settings.queue_size:
            self._dropped_full.inc(rows)
            return
        if queued is None or not fits:
            if id(served) in self._not_numeric or not _numeric(served, output):
                self._not_numeric[id(served)] = served
                return
            # Rows of one version have one layout, unless its inputs have dynamic dimensions: then the
            # latest shape's rows go.
            queued = self._rows[id(served)] = SampledRows(served, inputs, output.raw, output.spec.datatype.numpy, rows)
        queued.append(inputs, output.raw, rows)
        self._queued += 1
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
        taken, self._rows, self._queued = self._rows, {}, 0
        for queued in taken.values():
            for start in range(0, queued.count, self.settings.batch_rows):
                end = min(start + self.settings.batch_rows, queued.count)
                await self._send(queued, start, end)

    async def _send(self, queued: SampledRows, start: int, end: int) -> None:
        try:
            message = to_message(queued, start, end)
            request = monitor_pb.WriteDriftSamplesRequest(samples=[message])
            response = await self._stub().WriteDriftSamples(  # type: ignore[misc]
                request, timeout=SEND_TIMEOUT_SECONDS, metadata=self._metadata
            )
            self.sent.inc(response.accepted_rows)
        except asyncio.CancelledError:
            self._dropped_send.inc(end - start)
            raise
        except grpc.aio.AioRpcError as error:
            self._failed(end - start, f"{error.code().name}: {error.details()}")
        except (AtelierError, ValueError) as error:
            self._failed(end - start, str(error))

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


def to_message(queued: SampledRows, start: int, end: int) -> monitor_pb.DriftSamples:
    """Rows `start` to `end` of one model version as the monitor takes them."""
    served = queued.served
    return _message(
        f"projects/{served.project}/deployments/{served.deployment_id}",
        served.version_name,
        feature_names([spec.name for spec in served.signature.inputs], queued.input_widths),
        queued.features(start, end),
        queued.predictions(start, end),
    )


def feature_names(input_names: Sequence[str], input_widths: Sequence[int]) -> list[str]:
    """`NAME[i]` for each flattened value of each input."""
    names: list[str] = []
    for index, width in enumerate(input_widths):
        name = input_names[index] if len(input_names) == len(input_widths) else f"input__{index}"
        names.extend(f"{name}[{i}]" for i in range(width))
    return names


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
