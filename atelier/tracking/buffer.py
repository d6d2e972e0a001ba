"""Metric points from a training loop, sent in batches by a background thread.

`add()` appends the step, the time and the values to flat arrays and the names as one tuple, so
logging every step costs the loop a microsecond or two whatever the number of metrics, and
creates almost nothing for the garbage collector to look at (the pauses of collections it
triggers would count as time the loop is blocked). The sender thread takes what has piled up,
turns it into column-wise batches and ships them; when the registry is unreachable it retries
with backoff for a bounded time, then drops the batch and counts what was lost. The loop itself
never waits on the network, and `close()` waits at most its timeout.
"""

from __future__ import annotations

import logging
import threading
import time
from array import array
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from atelier.errors import AtelierError, InvalidArgument
from atelier.registry.v1 import registry_service_pb2 as rpc

log = logging.getLogger(__name__)


@dataclass
class _Pending:
    """Points logged and not yet taken by the sender: per add() call its step, time and names;
    per point its value."""

    steps: array[int]
    times: array[float]
    names: list[tuple[str, ...]]
    values: array[float]

    @classmethod
    def empty(cls) -> _Pending:
        return cls(array("q"), array("d"), [], array("d"))


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
        self._capacity = capacity
        self._pending = _Pending.empty()
        # Held for an append or for the sender swapping in empty arrays: never across I/O.
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._closing = threading.Event()
        self.added = 0
        self.sent = 0
        self.lost = 0
        self._overflowed = 0
        self._thread = threading.Thread(target=self._loop, name="atelier-metrics", daemon=True)
        self._thread.start()

    def add(self, metrics: dict[str, float], step: int) -> None:
        """Queue one value per metric at `step` (never blocks). Values are numbers (anything with
        `__float__`, such as a 0-d tensor); another value is a TypeError and nothing of the call is
        kept. When `capacity` points are already waiting, the call's points are dropped and
        counted as lost."""
        names = tuple(metrics)
        moment = time.time()
        with self._lock:
            pending = self._pending
            values = pending.values
            if len(values) + len(names) > self._capacity:
                self._overflowed += len(names)
                self.added += len(names)
                return
            before = len(values)
            try:
                values.extend(metrics.values())
            except TypeError:
                del values[before:]
                raise
            pending.steps.append(step)
            pending.times.append(moment)
            pending.names.append(names)
            self.added += len(names)
            full = len(values) >= self._batch
        if full:
            self._wake.set()

    def _take(self) -> _Pending:
        with self._lock:
            taken, self._pending = self._pending, _Pending.empty()
        return taken

    def _loop(self) -> None:
        while True:
            self._wake.wait(self._interval)
            self._wake.clear()
            closing = self._closing.is_set()
            taken = self._take()
            for columns, count in _batches(taken, self._batch):
                self._deliver(columns, count)
            if closing:
                return

    def _deliver(self, columns: rpc.MetricColumns, count: int) -> None:
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


def _batches(pending: _Pending, size: int) -> Iterator[tuple[rpc.MetricColumns, int]]:
    """Column-wise batches of about `size` points (whole add() calls), with their point counts."""
    keys: dict[str, int] = {}
    # A loop logs the same names step after step: their key indexes are worked out once.
    indexes: dict[tuple[str, ...], list[int]] = {}
    start = 0
    key_index: list[int] = []
    steps: list[int] = []
    times: list[float] = []
    for step, moment, names in zip(pending.steps, pending.times, pending.names, strict=True):
        index = indexes.get(names)
        if index is None:
            index = indexes[names] = [keys.setdefault(name, len(keys)) for name in names]
        key_index += index
        steps += [step] * len(names)
        times += [moment] * len(names)
        if len(key_index) >= size:
            yield _batch(keys, key_index, steps, pending.values[start : start + len(key_index)], times)
            start += len(key_index)
            key_index, steps, times = [], [], []
    if key_index:
        yield _batch(keys, key_index, steps, pending.values[start:], times)


def _batch(
    keys: dict[str, int], key_index: list[int], steps: list[int], values: array[float], times: list[float]
) -> tuple[rpc.MetricColumns, int]:
    columns = rpc.MetricColumns(keys=list(keys), key_index=key_index, steps=steps, values=values, times=times)
    return columns, len(key_index)
