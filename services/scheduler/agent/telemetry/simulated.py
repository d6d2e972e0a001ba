"""Synthetic samples for a node with a declared inventory (no GPU): a card a task holds looks busy,
the others idle. The exporter labels every series of such a node `simulated="true"`, so these values
can drive dashboards and tests without anyone mistaking them for hardware.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from atelier.scheduler.v1 import resources_pb2 as pb
from services.scheduler.agent.telemetry.samples import CardSample

MIB = 1024 * 1024
IDLE_POWER_W = 40.0
POWER_PER_PERCENT_W = 2.5
"""A busy card at 100% draws 290 W: the order of a data-centre card; no more is claimed."""


class SimulatedTelemetry:
    """Samples derived from which cards are busy; energy integrates the simulated power over time."""

    simulated = True
    driver_version = ""

    def __init__(
        self, cards: list[pb.Card], busy_utilization: float = 90.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.cards = cards
        self.busy_utilization = busy_utilization
        self._clock = clock
        self._energy_mj = [0.0] * len(cards)
        self._last = clock()

    def sample(self, busy: set[int]) -> list[CardSample]:
        now = self._clock()
        elapsed, self._last = max(now - self._last, 0.0), now
        samples = []
        for position, card in enumerate(self.cards):
            util = self.busy_utilization if card.index in busy else 0.0
            power = IDLE_POWER_W + POWER_PER_PERCENT_W * util
            self._energy_mj[position] += power * elapsed * 1000.0
            total_mib = card.memory_total_bytes / MIB
            used = total_mib * 0.6 if card.index in busy else 0.0
            samples.append(
                CardSample(
                    index=card.index,
                    uuid=card.uuid,
                    pci_bus_id=card.pci_bus_id,
                    model_name=card.model,
                    gpu_util=util,
                    mem_copy_util=util * 0.5,
                    fb_used_mib=used,
                    fb_free_mib=total_mib - used,
                    fb_reserved_mib=0.0,
                    gpu_temp=30.0 + 0.4 * util,
                    memory_temp=32.0 + 0.4 * util,
                    power_w=power,
                    energy_mj=self._energy_mj[position],
                    sm_clock_mhz=1410.0 if util else 210.0,
                    mem_clock_mhz=1215.0,
                    pcie_replays=0.0,
                    xid=0.0,
                    ecc_sbe_total=0.0,
                    ecc_dbe_total=0.0,
                    remapped_correctable=0.0,
                    remapped_uncorrectable=0.0,
                    remap_failed=0.0,
                    violations_ns={"power": 0.0, "thermal": 0.0, "board_limit": 0.0, "reliability": 0.0},
                    profiling={
                        "gr_engine_active": util / 100.0,
                        "pipe_tensor_active": 0.6 * util / 100.0,
                        "dram_active": 0.4 * util / 100.0,
                    },
                )
            )
        return samples
