"""Samples of served requests' inputs and predictions, sent to the monitor for drift, off the request path.

A request that succeeded is offered to the sampler: with probability `rate` it is appended, as references
to the arrays it already has, to a bounded queue (when the queue is full the sample is dropped and
counted; the request never waits, and never wakes another thread). One background thread wakes every
`flush_seconds`, takes what is queued, turns it into rows (each input flattened and concatenated in the
signature's order; the prediction is the first output itself when it holds one value per row, else the
index of its largest value) and sends them to the monitor's WriteDriftSamples in messages of at most
`batch_rows` rows. A monitor that cannot be
reached costs the samples of that send (counted as `send_failed`), never a request.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from prometheus_client import CollectorRegistry, Counter

from atelier.client.monitor import MonitorClient
from atelier.errors import AtelierError
from atelier.monitor.v1 import monitor_service_pb2 as monitor_pb
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


@dataclass(frozen=True)
class _Sample:
    deployment: str
    model_version: str
    input_names: Sequence[str]
    inputs: Sequence[npt.NDArray[Any]]
    output: OutputTensor
    rows: int


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
        # deque's append and popleft are atomic: the request path takes no lock.
        self._pending: deque[tuple[Served, Sequence[npt.NDArray[Any]], OutputTensor, int]] = deque()
        self._stop = threading.Event()
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
        """Maybe queue the request's inputs and outputs; never blocks, never wakes the sender."""
        if self.settings.rate <= 0 or not outputs or (self.settings.rate < 1 and self._chance() >= self.settings.rate):
            return
        rows = len(inputs[0]) if served.signature.batched and inputs and inputs[0].ndim else 1
        if sum(a.size for a in inputs) > rows * self.settings.max_features:
            return
        if len(self._pending) >= self.settings.queue_size:
            self._dropped_full.inc(rows)
            return
        self._pending.append((served, inputs, outputs[0], rows))

    def start(self) -> None:
        if self.enabled and self._thread is None:
            self._thread = threading.Thread(target=self._run, name="drift-sampler", daemon=True)
            self._thread.start()

    def close(self) -> None:
        """Send what is queued (one last try) and stop the thread."""
        if self._thread is not None:
            self._stop.set()
            self._thread.join(timeout=SEND_TIMEOUT_SECONDS + self.settings.flush_seconds + 1)
            self._thread = None
        if self._client is not None:
            self._client.close()
            self._client = None

    def _run(self) -> None:
        # The sender wakes on its own clock, not per request: a request's append costs no thread switch.
        while not self._stop.wait(self.settings.flush_seconds):
            self._drain()
        self._drain()

    def _drain(self) -> None:
        while self._pending:
            batch: list[_Sample] = []
            rows = 0
            while self._pending and rows < self.settings.batch_rows:
                served, inputs, output, sample_rows = self._pending.popleft()
                rows += sample_rows
                if _numeric(served, output):
                    batch.append(_sample(served, inputs, output, sample_rows))
            if batch:
                self._send(batch, sum(s.rows for s in batch))

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


def _sample(served: Served, inputs: Sequence[npt.NDArray[Any]], output: OutputTensor, rows: int) -> _Sample:
    return _Sample(
        f"projects/{served.project}/deployments/{served.deployment_id}",
        served.version_name,
        [spec.name for spec in served.signature.inputs],
        inputs,
        output,
        rows,
    )


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
        messages.append(
            monitor_pb.DriftSamples(
                deployment=deployment,
                model_version=model_version,
                feature_names=feature_names(samples[-1]),
                features=_feature_rows(samples).ravel().tolist(),
                predictions=predictions(samples).tolist(),
            )
        )
    return messages


def _row_shape(sample: _Sample) -> tuple[int, ...]:
    return tuple(a.size // sample.rows for a in sample.inputs)


def _feature_rows(samples: Sequence[_Sample]) -> npt.NDArray[np.float64]:
    """Each input's rows stacked over the samples (one copy), the inputs side by side."""
    per_input = [
        np.concatenate([np.reshape(s.inputs[i], (s.rows, -1)) for s in samples]) for i in range(len(samples[0].inputs))
    ]
    return np.concatenate(per_input, axis=1, dtype=np.float64, casting="unsafe")


def feature_names(sample: _Sample) -> list[str]:
    """`NAME[i]` for each flattened value of each input, as the sample's inputs are shaped."""
    names: list[str] = []
    for index, array in enumerate(sample.inputs):
        name = sample.input_names[index] if len(sample.input_names) == len(sample.inputs) else f"input__{index}"
        names.extend(f"{name}[{i}]" for i in range(array.size // sample.rows))
    return names


def predictions(samples: Sequence[_Sample]) -> npt.NDArray[np.float64]:
    """The first output per row when it is one value, else the index of the row's largest value."""
    values = np.concatenate(
        [
            np.frombuffer(s.output.raw, dtype=s.output.spec.datatype.numpy).reshape(s.rows, -1).astype(np.float64)
            for s in samples
        ]
    )
    chosen = values[:, 0] if values.shape[1] == 1 else np.argmax(values, axis=1)
    return np.asarray(chosen, dtype=np.float64)
