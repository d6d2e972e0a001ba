"""One sample of one card: what NVML reports, in dcgm-exporter's units. `None` means the card or the
driver cannot report it, and the series is left out rather than invented."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol


@dataclass
class CardSample:
    index: int
    uuid: str
    pci_bus_id: str
    model_name: str
    gpu_util: float | None = None
    """Percent 0-100 (DCGM_FI_DEV_GPU_UTIL)."""
    mem_copy_util: float | None = None
    fb_used_mib: float | None = None
    fb_free_mib: float | None = None
    fb_reserved_mib: float | None = None
    gpu_temp: float | None = None
    memory_temp: float | None = None
    power_w: float | None = None
    energy_mj: float | None = None
    """Millijoules since the driver loaded (a counter)."""
    sm_clock_mhz: float | None = None
    mem_clock_mhz: float | None = None
    pcie_replays: float | None = None
    xid: float | None = None
    """Code of the last XID error seen, 0 when none."""
    ecc_sbe_total: float | None = None
    ecc_dbe_total: float | None = None
    remapped_correctable: float | None = None
    remapped_uncorrectable: float | None = None
    remap_failed: float | None = None
    violations_ns: dict[str, float] = field(default_factory=dict)
    """Throttling time by cause: power, thermal, board_limit, reliability (DCGM_FI_DEV_*_VIOLATION)."""
    profiling: dict[str, float] = field(default_factory=dict)
    """GPM activity ratios (Hopper and newer): gr_engine_active, pipe_tensor_active, dram_active."""


class TelemetrySource(Protocol):
    """Where samples come from: NVML, or the declared inventory's simulation."""

    simulated: bool
    driver_version: str

    def sample(self, busy: set[int]) -> list[CardSample]:
        """Every card now; `busy` are the indexes of cards a task holds (the simulation uses it)."""
        ...
