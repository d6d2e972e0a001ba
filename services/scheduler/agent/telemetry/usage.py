"""What each job's cards used on this node, measured at every sampling round and reported to the
monitor: GPU time held, and energy from each card's own energy counter.

Reports are batched (every `report_interval_s`) and carry an id; a batch the monitor did not
acknowledge is sent again with the same id, so a retry never counts twice. Unsent batches are kept
up to a bound; beyond it the oldest is dropped and counted, so a long monitor outage costs memory
only up to that bound.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from atelier.errors import AtelierError
from atelier.monitor.v1 import monitor_service_pb2 as pb
from services.scheduler.agent.telemetry.exporter import Holder
from services.scheduler.agent.telemetry.samples import CardSample

log = logging.getLogger(__name__)
Send = Callable[[str, str, list[pb.UsageSample]], object]
"""(node name, report id, samples) -> anything; raises AtelierError when the monitor did not take it."""


@dataclass
class _Open:
    holder: Holder
    start: float
    end: float
    gpu_seconds: float = 0.0
    energy_joules: float = 0.0


class UsageMeter:
    """Accumulates per (job, card) between reports; `flush` turns them into a report batch."""

    def __init__(self, node: str, simulated: bool, max_gap_s: float, max_batches: int = 1000) -> None:
        self.node = node
        self.simulated = simulated
        self.max_gap_s = max_gap_s
        self._lock = threading.Lock()
        self._open: dict[tuple[str, str], _Open] = {}
        self._last: dict[str, tuple[float, float | None]] = {}
        self._pending: deque[tuple[str, list[pb.UsageSample]]] = deque(maxlen=max_batches)
        self._boot = uuid.uuid4().hex[:12]
        self._wall_offset = time.time() - time.monotonic()
        """Rounds are timed on the monotonic clock; reports carry wall-clock times."""
        self._sequence = 0
        self.dropped_batches = 0

    def observe(self, samples: list[CardSample], holders: dict[int, Holder], now: float) -> None:
        """One sampling round (`now` on the monotonic clock): charge each held card the time and energy
        since the previous round."""
        wall = now + self._wall_offset
        with self._lock:
            for sample in samples:
                previous = self._last.get(sample.uuid)
                self._last[sample.uuid] = (now, sample.energy_mj)
                holder = holders.get(sample.index)
                if holder is None or previous is None:
                    continue
                elapsed = now - previous[0]
                if not 0 < elapsed <= self.max_gap_s:
                    continue  # the first round of a hold, or a gap we cannot vouch for
                joules = 0.0
                if sample.energy_mj is not None and previous[1] is not None and sample.energy_mj >= previous[1]:
                    joules = (sample.energy_mj - previous[1]) / 1000.0
                key = (holder.job, sample.uuid)
                entry = self._open.get(key)
                if entry is None or entry.holder != holder:
                    entry = self._open[key] = _Open(holder, wall - elapsed, wall)
                entry.end = wall
                entry.gpu_seconds += elapsed
                entry.energy_joules += joules

    def flush(self) -> None:
        """Close the open intervals into a batch awaiting sending."""
        with self._lock:
            if not self._open:
                return
            batch = [self._sample(job_card[1], entry) for job_card, entry in self._open.items()]
            self._open = {}
            self._sequence += 1
            if len(self._pending) == self._pending.maxlen:
                self.dropped_batches += 1
            self._pending.append((f"{self._boot}-{self._sequence}", batch))

    def send(self, deliver: Send) -> int:
        """Send pending batches in order until one fails; returns how many went."""
        sent = 0
        while True:
            with self._lock:
                if not self._pending:
                    return sent
                report_id, batch = self._pending[0]
            try:
                deliver(self.node, report_id, batch)
            except AtelierError as error:
                log.warning("usage report %s not delivered (will retry): %s", report_id, error)
                return sent
            with self._lock:
                if self._pending and self._pending[0][0] == report_id:
                    self._pending.popleft()
            sent += 1

    def pending(self) -> int:
        with self._lock:
            return len(self._pending)

    def _sample(self, card_uuid: str, entry: _Open) -> pb.UsageSample:
        sample = pb.UsageSample(
            job=entry.holder.job,
            user=entry.holder.user,
            card_uuid=card_uuid,
            gpu_seconds=min(entry.gpu_seconds, entry.end - entry.start),
            energy_joules=entry.energy_joules,
            simulated=self.simulated,
        )
        sample.start_time.FromDatetime(datetime.fromtimestamp(entry.start, UTC))
        sample.end_time.FromDatetime(datetime.fromtimestamp(entry.end, UTC))
        return sample


class UsageReporter:
    """Flushes and sends the meter's batches every `interval_s` until stopped (then once more)."""

    def __init__(self, meter: UsageMeter, deliver: Send, interval_s: float) -> None:
        self.meter = meter
        self.deliver = deliver
        self.interval_s = interval_s

    def run(self, stop: threading.Event) -> None:
        while not stop.wait(self.interval_s):
            self.meter.flush()
            self.meter.send(self.deliver)
        self.meter.flush()
        self.meter.send(self.deliver)

    def start(self, stop: threading.Event) -> threading.Thread:
        thread = threading.Thread(target=self.run, args=(stop,), daemon=True, name="agent-usage")
        thread.start()
        return thread
