"""What the scheduler needs of an external engine that runs jobs for it (Slurm now, Kubernetes later).

The engine keeps the job's processes and queue; the scheduler keeps the record: it submits a job's
attempt, asks for the state of all its jobs at once, cancels, and copies new output into the job's log.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Protocol

from atelier.scheduler.v1 import resources_pb2 as pb
from services.scheduler.spec import Shape


class Phase(Enum):
    """Where an engine's job is, in Atelier's terms."""

    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    PREEMPTED = "preempted"

    @property
    def ended(self) -> bool:
        return self not in (Phase.QUEUED, Phase.RUNNING)


@dataclass(frozen=True)
class Submission:
    """One attempt of a job to hand to the engine."""

    job_name: str
    attempt: int
    job: pb.Job
    shape: Shape
    created: float = 0.0
    """When the job was submitted to Atelier (epoch seconds): an engine job older than that is not its."""


@dataclass(frozen=True)
class Submitted:
    """What the engine made of a submission: its id, and how the request was expressed to it."""

    external_id: str
    request: str


@dataclass(frozen=True)
class ExternalState:
    """An engine job's state as last seen: the phase, the engine's own words, the exit code once ended
    (None while it runs or when the engine gives none), and the hosts it runs on."""

    phase: Phase
    reason: str
    exit_code: int | None = None
    hosts: tuple[str, ...] = ()


@dataclass(frozen=True)
class Output:
    """Complete lines of a job's output after a position, the position after them, and whether more
    output is there to read at once."""

    lines: list[str]
    position: int
    more: bool = False


class Executor(Protocol):
    """An external engine. Its calls block (subprocesses, HTTP) and raise `Unavailable` when the engine
    cannot be reached, `FailedPrecondition` when it refuses a request."""

    def check(self, job: pb.Job, shape: Shape) -> None:
        """At submission: FAILED_PRECONDITION naming why the engine could never run the job."""

    def submit(self, submission: Submission) -> Submitted:
        """Hands one attempt to the engine."""

    def poll(self, external_ids: Sequence[str]) -> dict[str, ExternalState]:
        """States of many jobs at once; a job the engine no longer knows is left out."""

    def cancel(self, external_id: str) -> None:
        """Asks the engine to stop the job (queued or running)."""

    def read_output(self, job_name: str, external_id: str, position: int, final: bool) -> Output:
        """Output of the engine's job after `position` (0 at first); `final` also returns an
        unfinished last line, once the job has ended."""

    def explain(self, job_name: str, external_id: str) -> str:
        """Why an ended job failed before its command started (a dataset that could not be fetched), in
        the executor's words; '' when it did not."""
