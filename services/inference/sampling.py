"""Samples of served requests' inputs and predictions, sent to the monitor for drift, off the request path.

A request that succeeded is offered to the sampler: with probability `rate` it is put, as references to
the arrays it already has, on a bounded queue (`put_nowait`; when the queue is full the sample is
dropped and counted, the request never waits). One background thread takes what is queued, turns it
into rows (each input flattened and concatenated in the signature's order; the prediction is the first
output itself when it holds one value per row, else the index of its largest value) and sends them to
the monitor's WriteDriftSamples every `flush_seconds` or `batch_rows` rows. A monitor that cannot be
reached costs the samples of that send (counted as `send_failed`), never a request.
"""

from __future__ import annotations

import logging
import queue
import random
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from prometheus_client import CollectorRegistry, Counter

from atelier.client.monitor import MonitorClient
from atelier.errors import AtelierError
from atelier.monitor.v1 import monitor_service_pb2 as monitor_pb
from services.inference.batcher import OutputTensor
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


@dataclass(frozen=True)
class _Sample:
    deployment: str
    model_version: str
    input_names: Sequence[str]
    inputs: Sequence[npt.NDArray[Any]]
    output: OutputTensor
    rows: int
    batched: bool


class DriftSampler:
    """The bounded queue and the thread that empties it into the monitor."""

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
        self._queue: queue.Queue[_Sample | None] = queue.Queue(maxsize=settings.queue_size)
        self._client: MonitorClient | None = None
        self._thread: threading.Thread | None = None
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
        """Maybe queue the request's inputs and outputs; never blocks."""
        if self.settings.rate <= 0 or not outputs or (self.settings.rate < 1 and self._chance() >= self.settings.rate):
            return
        batched = served.signature.batched
        rows = len(inputs[0]) if batched and inputs and inputs[0].ndim else 1
        if sum(a.size for a in inputs) > rows * self.settings.max_features or not _numeric(served, outputs[0]):
            return
        try:
            self._queue.put_nowait(
                _Sample(
                    f"projects/{served.project}/deployments/{served.deployment_id}",
                    served.version_name,
                    [spec.name for spec in served.signature.inputs],
                    inputs,
                    outputs[0],
                    rows,
                    batched,
                )
            )
        except queue.Full:
            self._dropped_full.inc(rows)

    def start(self) -> None:
        if self.enabled and self._thread is None:
            self._thread = threading.Thread(target=self._run, name="drift-sampler", daemon=True)
            self._thread.start()

    def close(self) -> None:
        """Send what is queued (one last try) and stop the thread."""
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout=SEND_TIMEOUT_SECONDS + self.settings.flush_seconds + 1)
            self._thread = None
        if self._client is not None:
            self._client.close()
            self._client = None

    def _run(self) -> None:
        stopping = False
        while not stopping:
            first = self._queue.get()
            if first is None:
                break
            batch, rows = [first], first.rows
            deadline = time.monotonic() + self.settings.flush_seconds
            while rows < self.settings.batch_rows:
                try:
                    item = self._queue.get(timeout=max(deadline - time.monotonic(), 0))
                except queue.Empty:
                    break
                if item is None:
                    stopping = True
                    break
                batch.append(item)
                rows += item.rows
            self._send(batch, rows)

    def _send(self, batch: list[_Sample], rows: int) -> None:
        try:
            messages = to_messages(batch)
            if self._client is None:
                self._client = MonitorClient.at(self._monitor_address())
            self.sent.inc(self._client.write_drift_samples(messages, timeout=SEND_TIMEOUT_SECONDS))
        except (AtelierError, ValueError) as error:
            self._dropped_send.inc(rows)
            now = time.monotonic()
            if now - self._last_warning >= WARN_EVERY_SECONDS:
                self._last_warning = now
                log.warning("drift samples not sent to the monitor (%d rows dropped): %s", rows, error)


def _numeric(served: Served, output: OutputTensor) -> bool:
    if output.spec.datatype.name in NOT_SAMPLED_DATATYPES:
        return False
    return all(spec.datatype.name not in NOT_SAMPLED_DATATYPES for spec in served.signature.inputs)


def to_messages(batch: Sequence[_Sample]) -> list[monitor_pb.DriftSamples]:
    """One DriftSamples per deployment and model version, rows in the order they were served."""
    grouped: dict[tuple[str, str], list[_Sample]] = {}
    for sample in batch:
        grouped.setdefault((sample.deployment, sample.model_version), []).append(sample)
    messages = []
    for (deployment, model_version), samples in grouped.items():
        # Rows of one version have one width, unless its inputs have dynamic dimensions: then the
        # latest shape's rows go.
        shape = _row_shape(samples[-1])
        samples = [s for s in samples if _row_shape(s) == shape]
        features = [_features(s) for s in samples]
        names = feature_names(samples[-1])
        messages.append(
            monitor_pb.DriftSamples(
                deployment=deployment,
                model_version=model_version,
                feature_names=names,
                features=np.concatenate(features).ravel().tolist(),
                predictions=np.concatenate([predictions(s) for s in samples]).tolist(),
            )
        )
    return messages


def _row_shape(sample: _Sample) -> tuple[int, ...]:
    return tuple(a.size // sample.rows for a in sample.inputs)


def _features(sample: _Sample) -> npt.NDArray[np.float64]:
    return np.concatenate([np.asarray(a, dtype=np.float64).reshape(sample.rows, -1) for a in sample.inputs], axis=1)


def feature_names(sample: _Sample) -> list[str]:
    """`NAME[i]` for each flattened value of each input, as the sample's inputs are shaped."""
    names: list[str] = []
    for index, array in enumerate(sample.inputs):
        name = sample.input_names[index] if len(sample.input_names) == len(sample.inputs) else f"input__{index}"
        names.extend(f"{name}[{i}]" for i in range(array.size // sample.rows))
    return names


def predictions(sample: _Sample) -> npt.NDArray[np.float64]:
    """The output per row when it is one value, else the index of the row's largest value."""
    output = sample.output
    values = np.frombuffer(output.raw, dtype=output.spec.datatype.numpy).reshape(sample.rows, -1)
    chosen = values[:, 0] if values.shape[1] == 1 else np.argmax(values, axis=1)
    return np.asarray(chosen, dtype=np.float64)
