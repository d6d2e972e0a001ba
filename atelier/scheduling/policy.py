"""Policy configuration: priority classes, fair-share weights, quotas, aging, backfill, preemption, placement.

A job's priority (higher first), after Slurm's multifactor plugin (a weighted sum of factors):

    class priority + fair_share_weight * F(project) + age_weight * min(wait / age_horizon_s, 1)

F is the fair-share factor (see `fairshare`). Aging lets a waiting job overtake newer ones of a class up to
`age_weight` above it, so nothing in a class starves; EASY backfill then guarantees the job at the head a start.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum
from types import MappingProxyType

from atelier.errors import InvalidArgument
from atelier.scheduling.placement import BestFit, FirstFit, PlacementStrategy
from atelier.scheduling.request import JobRequest


@dataclass(frozen=True)
class PriorityClass:
    """A named priority level.

    `preempt_after_s`: a job of this class that has waited this long and still cannot start preempts running
    jobs of lower classes (None: never preempts). `preemptible`: whether jobs of this class may be preempted.
    """

    name: str
    priority: int
    preempt_after_s: float | None = None
    preemptible: bool = True


class Ordering(StrEnum):
    """How the queue is ordered."""

    PRIORITY = "priority"  # the multifactor priority above
    FIFO = "fifo"  # submit time only


DEFAULT_CLASSES: Mapping[str, PriorityClass] = MappingProxyType(
    {
        "low": PriorityClass("low", 0),
        "normal": PriorityClass("normal", 1000),
        "high": PriorityClass("high", 5000, preempt_after_s=600.0, preemptible=False),
    }
)


@dataclass(frozen=True)
class PolicyConfig:
    """Everything a cycle needs to know besides the cluster and the jobs. The defaults are Atelier's policy;
    `fifo_first_fit()` and `priority_backfill_first_fit()` are the simulator's baselines.

    `preemptors_per_cycle` bounds how many waiting jobs may look for victims in one cycle (each search looks at
    every node of the kinds they accept); the others try again next cycle.
    """

    classes: Mapping[str, PriorityClass] = field(default_factory=lambda: DEFAULT_CLASSES)
    shares: Mapping[str, float] = field(default_factory=lambda: MappingProxyType({}))
    default_share: float = 1.0
    gpu_quotas: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))
    half_life_s: float = 7 * 24 * 3600.0
    fair_share_weight: float = 1000.0
    age_weight: float = 1000.0
    age_horizon_s: float = 24 * 3600.0
    ordering: Ordering = Ordering.PRIORITY
    backfill: bool = True
    preemption: bool = True
    preemptors_per_cycle: int = 16
    placement: str = "best-fit"

    def __post_init__(self) -> None:
        if not self.classes:
            raise InvalidArgument("at least one priority class is needed")
        for name, cls in self.classes.items():
            if name != cls.name:
                raise InvalidArgument(f"priority class {cls.name!r} is registered under {name!r}")
        for value, what in ((self.half_life_s, "half_life_s"), (self.age_horizon_s, "age_horizon_s")):
            if not value > 0:
                raise InvalidArgument(f"{what} must be > 0, got {value}")
        for project, share in self.shares.items():
            if share < 0:
                raise InvalidArgument(f"share of project {project!r} must be >= 0, got {share}")
        for project, quota in self.gpu_quotas.items():
            if quota < 0:
                raise InvalidArgument(f"GPU quota of project {project!r} must be >= 0, got {quota}")
        if self.preemptors_per_cycle < 0:
            raise InvalidArgument(f"preemptors_per_cycle must be >= 0, got {self.preemptors_per_cycle}")
        strategy_for(self.placement)

    def priority_class(self, name: str) -> PriorityClass:
        """The class of that name; INVALID_ARGUMENT listing the configured classes otherwise."""
        try:
            return self.classes[name]
        except KeyError:
            allowed = ", ".join(sorted(self.classes))
            raise InvalidArgument(f"unknown priority class {name!r}; allowed: {allowed}") from None

    def check(self, request: JobRequest) -> None:
        """INVALID_ARGUMENT when a request names something this policy does not know (its priority class)."""
        self.priority_class(request.priority_class)

    @property
    def can_preempt(self) -> bool:
        """Whether any class may preempt at all."""
        return self.preemption and any(c.preempt_after_s is not None for c in self.classes.values())


_STRATEGIES: dict[str, type[BestFit] | type[FirstFit]] = {"best-fit": BestFit, "first-fit": FirstFit}


def strategy_for(name: str) -> PlacementStrategy:
    """The placement strategy of that name (`best-fit`, `first-fit`)."""
    try:
        return _STRATEGIES[name]()
    except KeyError:
        raise InvalidArgument(f"unknown placement {name!r}; allowed: {', '.join(_STRATEGIES)}") from None


def fifo_first_fit(config: PolicyConfig | None = None) -> PolicyConfig:
    """Baseline (a): submit order, first fit, the head blocks the queue; no fair share, backfill or preemption."""
    return replace(
        config or PolicyConfig(), ordering=Ordering.FIFO, backfill=False, preemption=False, placement="first-fit"
    )


def priority_backfill_first_fit(config: PolicyConfig | None = None) -> PolicyConfig:
    """Baseline (b): Atelier's priorities, fair share, backfill and preemption, but first-fit placement (no
    heterogeneity, fragmentation or topology awareness): the difference to Atelier is placement alone."""
    return replace(config or PolicyConfig(), placement="first-fit")
