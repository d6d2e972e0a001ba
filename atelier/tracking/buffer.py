"""Metric points from a training loop, sent in batches by a background thread.

`add()` only appends to a deque, so logging every step costs the loop microseconds. The sender
thread ships column-wise batches; when the registry is unreachable it retries with backoff for a
bounded time, then drops the batch and counts what was lost. The loop itself never waits on the
network, and `close()` waits at most its timeout.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from atelier.errors import AtelierError, InvalidArgument
from atelier.registry.v1 import registry_service_pb2 as rpc

log = logging.getLogger(__name__)
Point = tuple[str, int, float, float]


@dataclass(frozen=True)
class BufferReport:
    """What happened to the points logged."""

    sent: int
    lost: int


class MetricBuffer:
    """Buffers points and sends them from a daemon thread."""

    def __init__(
        self,
        send: Callable[[rpc.MetricColumns], None],
        *,
        batch: int = 20_000,
        interval: float = 1.0,
        capacity: int = 5_000_000,
        retry_for: float = 30.0,
    ) -> None:
        self._send = send
        self._batch = batch
        self._interval = interval
        self._retry_for = retry_for
        self._points: deque[Point] = deque(maxlen=capacity)
        self._capacity = capacity
        self._wake = threading.Event()
        self._closing = threading.Event()
        self.added = 0
        self.sent = 0
        self.lost = 0
        self._overflowed = 0
        self._thread = threading.Thread(target=self._loop, name="atelier-metrics", daemon=True)
        self._thread.start()

    def add(self, metrics: dict[str, float], step: int) -> None:
        """Queue one value per metric at `step` (never blocks)."""
        moment = time.time()
        points = self._points
        if len(points) + len(metrics) > self._capacity:
            self._overflowed += len(points) + len(metrics) - self._capacity
        points.extend((key, step, float(value), moment) for key, value in metrics.items())
        self.added += len(metrics)
        if len(points) >= self._batch:
            self._wake.set()

    def _take(self) -> list[Point]:
        points = self._points
        count = min(len(points), self._batch)
        return [points.popleft() for _ in range(count)]

    def _loop(self) -> None:
        while True:
            self._wake.wait(self._interval)
            self._wake.clear()
            while self._points:
                self._deliver(self._take())
                if not self._closing.is_set() and len(self._points) < self._batch:
                    break
            if self._closing.is_set() and not self._points:
                return

    def _deliver(self, points: list[Point]) -> None:
        columns = _columns(points)
        deadline = time.monotonic() + self._retry_for
        delay = 0.2
        while True:
            try:
                self._send(columns)
                self.sent += len(points)
                return
            except InvalidArgument as error:
                log.warning("registry refused %d metric points: %s", len(points), error)
                break
            except AtelierError as error:
                if time.monotonic() + delay > deadline or self._closing.is_set() and self._retry_for == 0:
                    log.warning(
                        "dropping %d metric points after retrying for %.0fs: %s", len(points), self._retry_for, error
                    )
                    break
                time.sleep(delay)
                delay = min(delay * 2, 5.0)
        self.lost += len(points)

    def flush(self, timeout: float = 30.0) -> bool:
        """Wait until every point added so far was delivered or given up on; False on timeout."""
        target = self.added
        deadline = time.monotonic() + timeout
        while self.sent + self.lost + self._overflowed < target:
            if time.monotonic() > deadline or not self._thread.is_alive():
                return False
            self._wake.set()
            time.sleep(0.005)
        return True

    def close(self, timeout: float = 30.0) -> BufferReport:
        """Send what is queued (waiting at most `timeout` seconds) and stop the thread."""
        self._closing.set()
        self._wake.set()
        self._thread.join(timeout)
        leftover = len(self._points)
        if self._thread.is_alive():
            self._retry_for = 0
        return BufferReport(self.sent, self.lost + leftover + self._overflowed)


def _columns(points: list[Point]) -> rpc.MetricColumns:
    keys: dict[str, int] = {}
    index = [keys.setdefault(p[0], len(keys)) for p in points]
    return rpc.MetricColumns(
        keys=list(keys),
        key_index=index,
        steps=[p[1] for p in points],
        values=[p[2] for p in points],
        times=[p[3] for p in points],
    )
