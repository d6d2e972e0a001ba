"""The node's GPU series as dcgm-exporter publishes them, plus who holds each card.

Names, units and label order follow dcgm-exporter (`etc/default-counters.csv`): labels `gpu`, `UUID`,
`pci_bus_id`, `device`, `modelName`, `Hostname` (the released exporters' spelling) and
`DCGM_FI_DRIVER_VERSION`; a simulated node adds `simulated="true"`. DCGM's counters are published as
gauges under their exact names (a Prometheus client would append `_total`), which keeps
`rate()` working and the dashboards matching. `instance` and `job` are Prometheus's to add.

Attribution: `atelier_gpu_job_info` (value 1) names the job (label `atelier_job`, since Prometheus owns
`job`), project and user holding each card, to join on `UUID`; `atelier_gpu_allocated_idle_seconds` is
how long a held card has stayed under the idle threshold, and `atelier_gpu_allocated_idle` turns 1 once
that lasts the configured time.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from services.scheduler.agent.telemetry.samples import CardSample

_FIELDS = {
    "DCGM_FI_DEV_SM_CLOCK": ("sm_clock_mhz", "SM clock frequency (in MHz)."),
    "DCGM_FI_DEV_MEM_CLOCK": ("mem_clock_mhz", "Memory clock frequency (in MHz)."),
    "DCGM_FI_DEV_MEMORY_TEMP": ("memory_temp", "Memory temperature (in C)."),
    "DCGM_FI_DEV_GPU_TEMP": ("gpu_temp", "GPU temperature (in C)."),
    "DCGM_FI_DEV_POWER_USAGE": ("power_w", "Power draw (in W)."),
    "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION": ("energy_mj", "Total energy consumption since boot (in mJ)."),
    "DCGM_FI_DEV_PCIE_REPLAY_COUNTER": ("pcie_replays", "Total number of PCIe retries."),
    "DCGM_FI_DEV_GPU_UTIL": ("gpu_util", "GPU utilization (in %)."),
    "DCGM_FI_DEV_MEM_COPY_UTIL": ("mem_copy_util", "Memory utilization (in %)."),
    "DCGM_FI_DEV_XID_ERRORS": ("xid", "Value of the last XID error encountered."),
    "DCGM_FI_DEV_FB_FREE": ("fb_free_mib", "Framebuffer memory free (in MiB)."),
    "DCGM_FI_DEV_FB_USED": ("fb_used_mib", "Framebuffer memory used (in MiB)."),
    "DCGM_FI_DEV_FB_RESERVED": ("fb_reserved_mib", "Framebuffer memory reserved (in MiB)."),
    "DCGM_FI_DEV_ECC_SBE_VOL_TOTAL": ("ecc_sbe_total", "Total number of single-bit volatile ECC errors."),
    "DCGM_FI_DEV_ECC_DBE_VOL_TOTAL": ("ecc_dbe_total", "Total number of double-bit volatile ECC errors."),
    "DCGM_FI_DEV_CORRECTABLE_REMAPPED_ROWS": ("remapped_correctable", "Rows remapped for correctable errors."),
    "DCGM_FI_DEV_UNCORRECTABLE_REMAPPED_ROWS": ("remapped_uncorrectable", "Rows remapped for uncorrectable errors."),
    "DCGM_FI_DEV_ROW_REMAP_FAILURE": ("remap_failed", "Whether remapping of rows has failed."),
}
_VIOLATIONS = {
    "DCGM_FI_DEV_POWER_VIOLATION": ("power", "Throttling duration due to power constraints (in ns)."),
    "DCGM_FI_DEV_THERMAL_VIOLATION": ("thermal", "Throttling duration due to thermal constraints (in ns)."),
    "DCGM_FI_DEV_BOARD_LIMIT_VIOLATION": ("board_limit", "Throttling duration due to board limit (in ns)."),
    "DCGM_FI_DEV_RELIABILITY_VIOLATION": ("reliability", "Throttling duration due to reliability (in ns)."),
}
_PROFILING = {
    "DCGM_FI_PROF_GR_ENGINE_ACTIVE": ("gr_engine_active", "Ratio of time the graphics engine is active."),
    "DCGM_FI_PROF_PIPE_TENSOR_ACTIVE": ("pipe_tensor_active", "Ratio of cycles the tensor (HMMA) pipe is active."),
    "DCGM_FI_PROF_DRAM_ACTIVE": ("dram_active", "Ratio of cycles the device memory interface is active."),
}
LABELS = ["gpu", "UUID", "pci_bus_id", "device", "modelName", "Hostname", "DCGM_FI_DRIVER_VERSION"]


@dataclass(frozen=True)
class Holder:
    """Who holds a card: the job, its project and user."""

    job: str
    project: str
    user: str


class DcgmCollector(Collector):
    """Renders the latest samples at scrape time; `update` is called by the sampler."""

    def __init__(
        self, hostname: str, driver_version: str, simulated: bool, idle_percent: float, idle_after_s: float
    ) -> None:
        self.hostname = hostname
        self.driver_version = driver_version
        self.simulated = simulated
        self.idle_percent = idle_percent
        self.idle_after_s = idle_after_s
        self._lock = threading.Lock()
        self._samples: list[CardSample] = []
        self._holders: dict[int, Holder] = {}
        self._idle_since: dict[tuple[str, Holder], float] = {}
        self._now = 0.0

    def update(self, samples: list[CardSample], holders: dict[int, Holder], now: float) -> None:
        """The latest samples and holders; tracks how long each held card has been idle."""
        idle_since = {}
        for sample in samples:
            holder = holders.get(sample.index)
            if holder is None:
                continue
            key = (sample.uuid, holder)
            busy = sample.gpu_util is not None and sample.gpu_util >= self.idle_percent
            if not busy:
                idle_since[key] = self._idle_since.get(key, now)
        with self._lock:
            self._samples, self._holders, self._idle_since, self._now = samples, dict(holders), idle_since, now

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            samples, holders, idle_since = self._samples, self._holders, dict(self._idle_since)
            now = self._now
        extra = ["simulated"] if self.simulated else []
        labels = {s.index: self._labels(s) for s in samples}
        for name, (attribute, help_text) in _FIELDS.items():
            yield from self._family(name, help_text, extra, samples, labels, lambda s, a=attribute: getattr(s, a))
        for name, (cause, help_text) in _VIOLATIONS.items():
            yield from self._family(
                name, help_text, extra, samples, labels,
                lambda s, c=cause: s.violations_ns.get(c),
            )  # fmt: skip
        for name, (key, help_text) in _PROFILING.items():
            yield from self._family(name, help_text, extra, samples, labels, lambda s, k=key: s.profiling.get(k))
        yield from self._attribution(samples, holders, idle_since, now)

    def _labels(self, sample: CardSample) -> list[str]:
        values = [
            str(sample.index),
            sample.uuid,
            sample.pci_bus_id,
            f"nvidia{sample.index}",
            sample.model_name,
            self.hostname,
            self.driver_version,
        ]
        return values + (["true"] if self.simulated else [])

    @staticmethod
    def _family(
        name: str,
        help_text: str,
        extra: list[str],
        samples: list[CardSample],
        labels: dict[int, list[str]],
        read: object,
    ) -> Iterator[Metric]:
        family = GaugeMetricFamily(name, help_text, labels=LABELS + extra)
        for sample in samples:
            value = read(sample)  # type: ignore[operator]
            if value is not None:
                family.add_metric(labels[sample.index], float(value))
        if family.samples:
            yield family

    def _attribution(
        self,
        samples: list[CardSample],
        holders: dict[int, Holder],
        idle_since: dict[tuple[str, Holder], float],
        now: float,
    ) -> Iterator[Metric]:
        names = ["gpu", "UUID", "Hostname", "atelier_job", "project", "user"] + (
            ["simulated"] if self.simulated else []
        )
        info = GaugeMetricFamily("atelier_gpu_job_info", "The job, project and user holding a card (1).", labels=names)
        idle_seconds = GaugeMetricFamily(
            "atelier_gpu_allocated_idle_seconds",
            f"How long a held card has been under {self.idle_percent:g}% utilisation (0 while busy).",
            labels=names,
        )
        idle = GaugeMetricFamily(
            "atelier_gpu_allocated_idle",
            f"1 when a held card has been under {self.idle_percent:g}% for {self.idle_after_s:g}s or more.",
            labels=names,
        )
        for sample in samples:
            holder = holders.get(sample.index)
            if holder is None:
                continue
            values = [str(sample.index), sample.uuid, self.hostname, holder.job, holder.project, holder.user]
            values += ["true"] if self.simulated else []
            since = idle_since.get((sample.uuid, holder))
            seconds = now - since if since is not None else 0.0
            info.add_metric(values, 1.0)
            idle_seconds.add_metric(values, seconds)
            idle.add_metric(values, 1.0 if since is not None and seconds >= self.idle_after_s else 0.0)
        yield from (info, idle_seconds, idle)
