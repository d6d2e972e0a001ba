"""Samples every card at a fixed interval on its own thread and hands the result to the exporter."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from services.scheduler.agent.telemetry.exporter import DcgmCollector, Holder
from services.scheduler.agent.telemetry.samples import CardSample, TelemetrySource

log = logging.getLogger(__name__)
Observer = Callable[[list[CardSample], dict[int, Holder], float], None]
"""Also told of every round (the usage meter)."""


class Sampler:
    """`run(stop)` samples until `stop` is set; `sample_once()` is one round (tests, benchmarks)."""

    def __init__(
        self,
        source: TelemetrySource,
        collector: DcgmCollector,
        holders: Callable[[], dict[int, Holder]],
        interval_s: float = 1.0,
        observers: list[Observer] | None = None,
    ) -> None:
        self.source = source
        self.collector = collector
        self.holders = holders
        self.interval_s = interval_s
        self.observers = observers or []

    def sample_once(self) -> None:
        held = self.holders()
        samples = self.source.sample(set(held))
        now = time.monotonic()
        self.collector.update(samples, held, now)
        for observe in self.observers:
            observe(samples, held, now)

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            started = time.monotonic()
            try:
                self.sample_once()
            except Exception:  # noqa: BLE001 - a failed round must not end the agent's telemetry
                log.exception("GPU sampling failed")
            stop.wait(max(self.interval_s - (time.monotonic() - started), 0.0))

    def start(self, stop: threading.Event) -> threading.Thread:
        thread = threading.Thread(target=self.run, args=(stop,), daemon=True, name="agent-telemetry")
        thread.start()
        return thread
