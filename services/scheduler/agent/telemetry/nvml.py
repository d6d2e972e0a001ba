"""Samples from the node's real cards through nvidia-ml-py (`pynvml`).

Every query is guarded on its own: a card or driver that does not support one (memory temperature
on GDDR cards, ECC on consumer cards, GPM before Hopper) leaves that value `None`, and the exporter
leaves the series out. XID errors arrive as NVML events; the last code seen is kept per card.
GPM activity ratios need two samples: each call compares with the previous call's sample.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from ctypes import c_void_p, cast
from functools import partial
from typing import Any, TypeVar

from services.scheduler.agent.telemetry.samples import CardSample

T = TypeVar("T")
MIB = 1024 * 1024
_VIOLATIONS = {"power": 0, "thermal": 1, "board_limit": 3, "reliability": 5}
"""nvmlPerfPolicyType_t values for dcgm-exporter's *_VIOLATION fields."""
_GPM = {"gr_engine_active": 1, "pipe_tensor_active": 5, "dram_active": 10}
"""NVML_GPM_METRIC_GRAPHICS_UTIL, _ANY_TENSOR_UTIL, _DRAM_BW_UTIL (percent; published as ratios)."""
_MEMORY_TEMP_FIELD = 82  # NVML_FI_DEV_MEMORY_TEMP


class NvmlTelemetry:
    simulated = False

    def __init__(self) -> None:
        import pynvml

        self._nvml = pynvml
        pynvml.nvmlInit()
        self.driver_version = _text(pynvml.nvmlSystemGetDriverVersion())
        self._handles = [pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(pynvml.nvmlDeviceGetCount())]
        self._static = [self._identity(h) for h in self._handles]
        self._xid = [0.0] * len(self._handles)
        self._events = self._xid_events()
        self._gpm_previous: list[Any] = [self._gpm_sample(h) for h in self._handles]

    def sample(self, busy: set[int]) -> list[CardSample]:
        self._read_events()
        return [self._sample(i, h) for i, h in enumerate(self._handles)]

    def _identity(self, handle: Any) -> tuple[str, str, str]:
        nvml = self._nvml
        return (
            _text(nvml.nvmlDeviceGetUUID(handle)),
            _text(nvml.nvmlDeviceGetPciInfo(handle).busId),
            _text(nvml.nvmlDeviceGetName(handle)),
        )

    def _try(self, call: Callable[[], T]) -> T | None:
        try:
            return call()
        except self._nvml.NVMLError:
            return None

    def _sample(self, index: int, handle: Any) -> CardSample:
        nvml = self._nvml
        uuid, bus, name = self._static[index]
        sample = CardSample(index, uuid, bus, name, xid=self._xid[index])
        rates = self._try(lambda: nvml.nvmlDeviceGetUtilizationRates(handle))
        if rates is not None:
            sample.gpu_util, sample.mem_copy_util = float(rates.gpu), float(rates.memory)
        memory = self._try(lambda: nvml.nvmlDeviceGetMemoryInfo(handle, version=nvml.nvmlMemory_v2))
        if memory is None:
            memory = self._try(lambda: nvml.nvmlDeviceGetMemoryInfo(handle))
        if memory is not None:
            sample.fb_used_mib, sample.fb_free_mib = memory.used / MIB, memory.free / MIB
            reserved = getattr(memory, "reserved", None)
            sample.fb_reserved_mib = reserved / MIB if reserved is not None else None
        sample.gpu_temp = _number(self._try(lambda: nvml.nvmlDeviceGetTemperature(handle, nvml.NVML_TEMPERATURE_GPU)))
        sample.memory_temp = self._memory_temp(handle)
        power = self._try(lambda: nvml.nvmlDeviceGetPowerUsage(handle))
        sample.power_w = power / 1000.0 if power is not None else None
        sample.energy_mj = _number(self._try(lambda: nvml.nvmlDeviceGetTotalEnergyConsumption(handle)))
        sample.sm_clock_mhz = _number(self._try(lambda: nvml.nvmlDeviceGetClockInfo(handle, nvml.NVML_CLOCK_SM)))
        sample.mem_clock_mhz = _number(self._try(lambda: nvml.nvmlDeviceGetClockInfo(handle, nvml.NVML_CLOCK_MEM)))
        sample.pcie_replays = _number(self._try(lambda: nvml.nvmlDeviceGetPcieReplayCounter(handle)))
        self._ecc(handle, sample)
        for cause, policy in _VIOLATIONS.items():
            violation = self._try(partial(nvml.nvmlDeviceGetViolationStatus, handle, policy))
            if violation is not None:
                sample.violations_ns[cause] = float(violation.violationTime)
        sample.profiling = self._gpm(index, handle)
        return sample

    def _memory_temp(self, handle: Any) -> float | None:
        values = self._try(lambda: self._nvml.nvmlDeviceGetFieldValues(handle, [_MEMORY_TEMP_FIELD]))
        if values is None or values[0].nvmlReturn != 0:
            return None
        return float(values[0].value.uiVal) or None  # 0 on GDDR cards that have no sensor

    def _ecc(self, handle: Any, sample: CardSample) -> None:
        nvml = self._nvml
        for kind, attribute in (
            (nvml.NVML_MEMORY_ERROR_TYPE_CORRECTED, "ecc_sbe_total"),
            (nvml.NVML_MEMORY_ERROR_TYPE_UNCORRECTED, "ecc_dbe_total"),
        ):
            count = self._try(partial(nvml.nvmlDeviceGetTotalEccErrors, handle, kind, nvml.NVML_VOLATILE_ECC))
            setattr(sample, attribute, _number(count))
        rows = self._try(lambda: nvml.nvmlDeviceGetRemappedRows(handle))
        if rows is not None:
            corrected, uncorrected, _pending, failed = rows
            sample.remapped_correctable, sample.remapped_uncorrectable = float(corrected), float(uncorrected)
            sample.remap_failed = 1.0 if failed else 0.0

    def _xid_events(self) -> Any:
        nvml = self._nvml
        events = self._try(nvml.nvmlEventSetCreate)
        if events is None:
            return None
        for handle in self._handles:
            with contextlib.suppress(nvml.NVMLError):  # not every card supports XID events
                nvml.nvmlDeviceRegisterEvents(handle, nvml.nvmlEventTypeXidCriticalError, events)
        return events

    def _read_events(self) -> None:
        if self._events is None:
            return
        nvml = self._nvml
        while True:
            try:
                event = nvml.nvmlEventSetWait_v2(self._events, 0)
            except nvml.NVMLError:  # NVML_ERROR_TIMEOUT: nothing pending
                return
            for index, handle in enumerate(self._handles):
                if _same_device(event.device, handle):
                    self._xid[index] = float(event.eventData)

    def _gpm_sample(self, handle: Any) -> Any:
        nvml = self._nvml
        support = self._try(lambda: nvml.nvmlGpmQueryDeviceSupport(handle))
        if support is None or not support.isSupportedDevice:
            return None
        sample = self._try(nvml.nvmlGpmSampleAlloc)
        if sample is None or self._try(lambda: nvml.nvmlGpmSampleGet(handle, sample)) is None:
            return None
        return sample

    def _gpm(self, index: int, handle: Any) -> dict[str, float]:
        previous = self._gpm_previous[index]
        if previous is None:
            return {}
        nvml = self._nvml
        current = self._try(nvml.nvmlGpmSampleAlloc)
        if current is None or self._try(lambda: nvml.nvmlGpmSampleGet(handle, current)) is None:
            return {}
        request = nvml.c_nvmlGpmMetricsGet_t()
        request.version = nvml.NVML_GPM_METRICS_GET_VERSION
        request.numMetrics = len(_GPM)
        request.sample1, request.sample2 = previous, current
        for slot, metric in enumerate(_GPM.values()):
            request.metrics[slot].metricId = metric
        result = self._try(lambda: nvml.nvmlGpmMetricsGet(request))
        with contextlib.suppress(nvml.NVMLError):
            nvml.nvmlGpmSampleFree(previous)
        self._gpm_previous[index] = current
        if result is None:
            return {}
        ratios = {}
        for slot, name in enumerate(_GPM):
            metric = result.metrics[slot]
            if metric.nvmlReturn == 0:
                ratios[name] = float(metric.value) / 100.0
        return ratios


def _same_device(a: Any, b: Any) -> bool:
    """NVML device handles are pointers: equal when they point at the same device."""
    return bool(cast(a, c_void_p).value == cast(b, c_void_p).value)


def _number(value: Any) -> float | None:
    return None if value is None else float(value)


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value
