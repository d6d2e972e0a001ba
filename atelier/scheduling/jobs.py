"""Where a job runs: its placement, and a running job as a scheduling cycle sees it."""

from __future__ import annotations

from dataclasses import dataclass, field

from atelier.scheduling.request import JobRequest


@dataclass(frozen=True)
class NodeAssignment:
    """The cards (indices as NVML numbers them) a job holds on one node."""

    node: str
    cards: tuple[int, ...]


@dataclass(frozen=True)
class Placement:
    """A gang's nodes, rank 0 (the rendezvous host) first."""

    assignments: tuple[NodeAssignment, ...]

    @property
    def nodes(self) -> tuple[str, ...]:
        """Node names, rank order."""
        return tuple(a.node for a in self.assignments)

    @property
    def gpus(self) -> int:
        """Cards held in all."""
        return sum(len(a.cards) for a in self.assignments)

    def describe(self) -> str:
        """`"node-1[0,1], node-2[0,1]"`."""
        return ", ".join(f"{a.node}[{','.join(map(str, a.cards))}]" for a in self.assignments)


@dataclass(frozen=True)
class RunningJob:
    """A job holding cards: its request (for priority, project and limits), placement and start time.

    `stopping` marks a job already told to stop (preempted, within its grace period): its cards are about to be
    free, so a cycle preempts no one else for the job they were freed for.
    """

    request: JobRequest
    placement: Placement
    start_time: float
    stopping: bool = False
    expected_end: float = field(init=False, repr=False, compare=False)
    """When its maximum run time runs out: the latest it will hold its cards."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "expected_end", self.start_time + self.request.max_runtime_s)

    @property
    def job_id(self) -> str:
        """The job's id."""
        return self.request.job_id
