"""Metric points from a training loop, sent in batches by a background thread.

`add()` appends one record per call (the step, the time, the metric names and values as two
tuples) to a deque, whatever the number of metrics, so logging every step costs the loop a
microsecond or two and leaves little for the garbage collector. The sender thread turns records
into column-wise batches and ships them; when the registry is unreachable it retries with backoff
for a bounded time, then drops the batch and counts what was lost. The loop itself never waits on
the network, and `close()` waits at most its timeout.
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
# One add() call: step, time, metric names, values.
Record = tuple[int, float, tuple[str, ...], tuple[float, ...]]


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
        self._records: deque[Record] = deque()
        self._capacity = capacity
        self._wake = threading.Event()
        self._closing = threading.Event()
        # `added` and `_overflowed` are written by the caller's thread only, `_taken`, `sent` and
        # `lost` by the sender only: no counter is shared between writers.
        self.added = 0
        self._taken = 0
        self.sent = 0
        self.lost = 0
        self._overflowed = 0
        self._thread = threading.Thread(target=self._loop, name="atelier-metrics", daemon=True)
        self._thread.start()

    def add(self, metrics: dict[str, float], step: int) -> None:
        """Queue one value per metric at `step` (never blocks). When `capacity` points are
        already waiting, the call's points are dropped and counted as lost."""
        record = (step, time.time(), tuple(metrics), tuple(map(float, metrics.values())))
        count = len(record[2])
        self.added += count
        queued = self.added - self._taken
        if queued > self._capacity:
            self._overflowed += count
            return
        self._records.append(record)
        if queued >= self._batch:
            self._wake.set()

    def _take(self) -> tuple[list[Record], int]:
        """Records holding about `batch` points (at least one record), and their point count."""
        records = self._records
        taken: list[Record] = []
        count = 0
        while records and count < self._batch:
            record = records.popleft()
            taken.append(record)
            count += len(record[2])
        self._taken += count
        return taken, count

    def _loop(self) -> None:
        while True:
            self._wake.wait(self._interval)
            self._wake.clear()
            while self._records:
                records, count = self._take()
                self._deliver(records, count)
                if not self._closing.is_set() and self.added - self._taken < self._batch:
                    break
            if self._closing.is_set() and not self._records:
                return

    def _deliver(self, records: list[Record], count: int) -> None:
        columns = _columns(records)
        deadline = time.monotonic() + self._retry_for
        delay = 0.2
        while True:
            try:
                self._send(columns)
                self.sent += count
                return
            except InvalidArgument as error:
                log.warning("registry refused %d metric points: %s", count, error)
                break
            except AtelierError as error:
                if time.monotonic() + delay > deadline or self._closing.is_set() and self._retry_for == 0:
                    log.warning("dropping %d metric points after retrying for %.0fs: %s", count, self._retry_for, error)
                    break
                time.sleep(delay)
                delay = min(delay * 2, 5.0)
        self.lost += count

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
        if self._thread.is_alive():
            self._retry_for = 0
        leftover = self.added - self._overflowed - self.sent - self.lost
        return BufferReport(self.sent, self.lost + leftover + self._overflowed)


def _columns(records: list[Record]) -> rpc.MetricColumns:
    keys: dict[str, int] = {}
    # A loop logs the same names step after step: their key indexes are worked out once.
    indexes: dict[tuple[str, ...], list[int]] = {}
    key_index: list[int] = []
    steps: list[int] = []
    values: list[float] = []
    times: list[float] = []
    for step, moment, names, numbers in records:
        index = indexes.get(names)
        if index is None:
            index = indexes[names] = [keys.setdefault(name, len(keys)) for name in names]
        key_index += index
        steps += [step] * len(names)
        times += [moment] * len(names)
        values += numbers
    return rpc.MetricColumns(keys=list(keys), key_index=key_index, steps=steps, values=values, times=times)
