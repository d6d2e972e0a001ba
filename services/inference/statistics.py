"""Triton's per-model statistics: counts and cumulative durations by stage and by batch size.

Durations are nanoseconds, as in ModelStatistics. Each request of a batch is charged the batch's
compute durations (Triton does the same); the per-batch-size table counts executions. Failures are
also counted by Triton's reasons (the `reason` label of `nv_inference_request_failure`): both
ModelStatistics and the Prometheus series read these counters, so they always agree.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Final

REJECTED: Final = "REJECTED"
"""Refused or dropped by the scheduler: a full queue, a queue timeout, too many sequences."""
CANCELED: Final = "CANCELED"
"""The caller went away (cancelled, or its own deadline passed) before the request ran."""
BACKEND: Final = "BACKEND"
"""The model raised while running the request."""
OTHER: Final = "OTHER"
"""Anything else: invalid input, a version unloaded before the request ran."""
FAILURE_REASONS: Final = (REJECTED, CANCELED, BACKEND, OTHER)


@dataclass
class Duration:
    """A count and the total nanoseconds of what was counted."""

    count: int = 0
    ns: int = 0

    def add(self, ns: int, count: int = 1) -> None:
        self.count += count
        self.ns += ns


@dataclass
class BatchDurations:
    """Executions of one batch size, by stage."""

    compute_input: Duration = field(default_factory=Duration)
    compute_infer: Duration = field(default_factory=Duration)
    compute_output: Duration = field(default_factory=Duration)


@dataclass
class StatsSnapshot:
    """A consistent copy of one version's statistics."""

    success: Duration
    fail: Duration
    queue: Duration
    compute_input: Duration
    compute_infer: Duration
    compute_output: Duration
    inference_count: int
    execution_count: int
    last_inference_ms: int
    batches: dict[int, BatchDurations]
    failures: dict[str, int]
    """Failed requests by reason (every reason of FAILURE_REASONS, zeros included)."""


class ModelStatistics:
    """Counters of one model version, updated by the batcher's instance threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._success = Duration()
        self._fail = Duration()
        self._queue = Duration()
        self._input = Duration()
        self._infer = Duration()
        self._output = Duration()
        self._inferences = 0
        self._executions = 0
        self._last_ms = 0
        self._batches: dict[int, BatchDurations] = {}
        self._failures = dict.fromkeys(FAILURE_REASONS, 0)

    def executed(self, batch_size: int, requests: int, input_ns: int, infer_ns: int, output_ns: int) -> None:
        """One model execution of `batch_size` samples carried by `requests` requests."""
        with self._lock:
            self._executions += 1
            self._inferences += batch_size
            self._last_ms = time.time_ns() // 1_000_000
            self._input.add(input_ns * requests, requests)
            self._infer.add(infer_ns * requests, requests)
            self._output.add(output_ns * requests, requests)
            durations = self._batches.setdefault(batch_size, BatchDurations())
            durations.compute_input.add(input_ns)
            durations.compute_infer.add(infer_ns)
            durations.compute_output.add(output_ns)

    def succeeded(self, total_ns: int, queue_ns: int) -> None:
        with self._lock:
            self._success.add(total_ns)
            self._queue.add(queue_ns)

    def failed(self, total_ns: int, reason: str) -> None:
        """One request that failed after `total_ns`, for one of FAILURE_REASONS."""
        if reason not in self._failures:
            raise ValueError(f"unknown failure reason {reason!r}; allowed: {', '.join(FAILURE_REASONS)}")
        with self._lock:
            self._fail.add(total_ns)
            self._failures[reason] += 1

    def snapshot(self) -> StatsSnapshot:
        def copy(d: Duration) -> Duration:
            return Duration(d.count, d.ns)

        with self._lock:
            return StatsSnapshot(
                success=copy(self._success),
                fail=copy(self._fail),
                queue=copy(self._queue),
                compute_input=copy(self._input),
                compute_infer=copy(self._infer),
                compute_output=copy(self._output),
                inference_count=self._inferences,
                execution_count=self._executions,
                last_inference_ms=self._last_ms,
                batches={
                    size: BatchDurations(copy(b.compute_input), copy(b.compute_infer), copy(b.compute_output))
                    for size, b in sorted(self._batches.items())
                },
                failures=dict(self._failures),
            )
