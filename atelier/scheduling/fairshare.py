"""Fair share between projects: decayed GPU usage and Slurm's classic fair-share factor.

Slurm's priority/multifactor plugin (doc/html/priority_multifactor.shtml, "Fair-share Factor") computes
F = 2 ** (-U / S), with U a project's share of the cluster's decayed usage and S its share of the weights:
a project that used exactly its share gets 0.5, an idle one 1, a heavy one towards 0. Past usage decays with
a half-life (Slurm's PriorityDecayHalfLife), so what a project ran last month weighs little today.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from atelier.scheduling.jobs import RunningJob


@dataclass(frozen=True)
class FairShareUsage:
    """GPU-seconds each project used, decayed to `as_of`. Immutable: `advance` and `charge` return new values."""

    as_of: float = 0.0
    gpu_seconds: Mapping[str, float] = field(default_factory=lambda: MappingProxyType({}))

    def advance(self, now: float, running: Iterable[RunningJob], half_life_s: float) -> FairShareUsage:
        """Decay to `now` and charge the GPUs `running` jobs held since `as_of` (or since they started),
        each second weighted by its own decay (the exact integral of g * 2^(-(now - t) / half_life))."""
        if now <= self.as_of:
            return self
        factor = _decay(now - self.as_of, half_life_s)
        usage = {project: used * factor for project, used in self.gpu_seconds.items()}
        for job in running:
            since = max(job.start_time, self.as_of)
            if since < now:
                gpus = job.request.gpus
                usage[job.request.project] = usage.get(job.request.project, 0.0) + gpus * _decayed_seconds(
                    now - since, half_life_s
                )
        return FairShareUsage(now, MappingProxyType(usage))

    def charge(self, project: str, gpus: int, start: float, end: float, half_life_s: float) -> FairShareUsage:
        """Charge `gpus` held from `start` to `end` (both <= `as_of`), decayed to `as_of`: for the part of a job's
        run that `advance` did not see, e.g. from the last cycle to its end."""
        if end <= start:
            return self
        seconds = _decayed_seconds(end - start, half_life_s) * _decay(self.as_of - end, half_life_s)
        usage = dict(self.gpu_seconds)
        usage[project] = usage.get(project, 0.0) + gpus * seconds
        return FairShareUsage(self.as_of, MappingProxyType(usage))


def fair_share_factors(
    usage: FairShareUsage, shares: Mapping[str, float], projects: Iterable[str], default_share: float = 1.0
) -> dict[str, float]:
    """F = 2 ** (-U / S) for each project (Slurm's classic fair-share factor, priority_multifactor).

    S is the project's weight over the weights of all projects concerned (the configured ones, those with
    usage and `projects`); U its decayed usage over the total. Projects without a configured weight get
    `default_share`.
    """
    concerned = set(shares) | set(usage.gpu_seconds) | set(projects)
    weights = {p: shares.get(p, default_share) for p in concerned}
    total_weight = sum(weights.values()) or 1.0
    total_usage = sum(usage.gpu_seconds.values())
    factors = {}
    for project, weight in weights.items():
        used = usage.gpu_seconds.get(project, 0.0) / total_usage if total_usage > 0 else 0.0
        share = weight / total_weight
        factors[project] = 2.0 ** (-used / share) if share > 0 else 0.0
    return factors


def _decay(seconds: float, half_life_s: float) -> float:
    return float(2.0 ** (-seconds / half_life_s))


def _decayed_seconds(seconds: float, half_life_s: float) -> float:
    """Integral over the last `seconds` of 2^(-age / half_life): what holding one GPU that long is worth now."""
    rate = math.log(2) / half_life_s
    return (1.0 - math.exp(-rate * seconds)) / rate
