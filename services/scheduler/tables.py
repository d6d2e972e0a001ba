"""The scheduler's tables (SQLModel). Only the scheduler reads or writes them.

Everything the scheduler decides is here, so a restart loses no job: nodes with their last reported
cards, jobs with their spec, attempts with their placement, the tasks each node should run, log
lines, and each project's decayed GPU usage for fair share.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Column, Index, UniqueConstraint
from sqlmodel import Field, SQLModel

metadata = SQLModel.metadata


def _json(default: Any = None) -> Any:
    return Field(default_factory=(dict if default is None else default), sa_column=Column(JSON, nullable=False))


class NodeRow(SQLModel, table=True):
    __tablename__ = "sched_nodes"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=63, unique=True)
    address: str = ""
    state: int = Field(index=True)
    discovery: str = ""
    driver_version: str = ""
    cpus: int = 0
    memory_bytes: int = Field(default=0, sa_type=BigInteger)
    labels: dict[str, str] = _json()
    cards: list[dict[str, Any]] = _json(list)
    """The node's cards as last reported (the `Card` message as JSON)."""
    links: list[dict[str, Any]] = _json(list)
    register_time: datetime
    heartbeat_time: datetime


class JobRow(SQLModel, table=True):
    __tablename__ = "sched_jobs"
    __table_args__ = (UniqueConstraint("project", "job_id"), Index("ix_sched_jobs_state_seq", "state", "id"))

    id: int | None = Field(default=None, primary_key=True)
    project: str = Field(max_length=63)
    job_id: str = Field(max_length=63)
    user: str = ""
    spec: dict[str, Any] = _json()
    """The submitted `Job` message as JSON (its input fields only)."""
    state: int
    reason: str = ""
    priority_class: str = ""
    executor: int = 0
    gpus: int = 0
    create_time: datetime
    start_time: datetime | None = None
    end_time: datetime | None = None
    restart_count: int = 0
    attempt: int = -1
    """Number of the current or last attempt; -1 before the first start."""
    external_id: str = ""
    trace_parent: str = Field(default="", max_length=100)
    """W3C traceparent of the submission, handed to the job's processes (TRACEPARENT)."""
    external_active: bool = False
    """True while the external engine (Slurm) may still have state or output of the attempt to collect."""
    log_offset: int = Field(default=0, sa_type=BigInteger)
    """How much of the external engine's output of the attempt is already in the log (bytes)."""


class AttemptRow(SQLModel, table=True):
    __tablename__ = "sched_attempts"
    __table_args__ = (UniqueConstraint("job_id", "number"),)

    id: int | None = Field(default=None, primary_key=True)
    job_id: int = Field(foreign_key="sched_jobs.id", index=True)
    number: int
    placement: dict[str, Any] = _json()
    """The `Placement` message as JSON."""
    start_time: datetime
    end_time: datetime | None = None
    outcome: int = 0
    reason: str = ""


class TaskRow(SQLModel, table=True):
    """One node's share of an attempt. Rows of attempts that have not ended hold their cards."""

    __tablename__ = "sched_tasks"
    __table_args__ = (
        UniqueConstraint("job_id", "attempt", "rank"),
        Index("ix_sched_tasks_node_active", "node", "active"),
    )

    id: int | None = Field(default=None, primary_key=True)
    job_id: int = Field(foreign_key="sched_jobs.id", index=True)
    attempt: int
    rank: int
    node: str = Field(max_length=63)
    cards: list[int] = _json(list)
    active: bool = True
    """True while the attempt holds the cards (until it ended and the agent reported the exit)."""
    state: int = 0
    """The last `TaskState` the agent reported; 0 before its first report."""
    exit_code: int | None = None
    message: str = ""


class LogRow(SQLModel, table=True):
    __tablename__ = "sched_logs"
    __table_args__ = (Index("ix_sched_logs_job_id", "job_id", "id"),)

    id: int | None = Field(default=None, primary_key=True)
    job_id: int = Field(foreign_key="sched_jobs.id")
    attempt: int
    rank: int
    stream: int
    time: datetime
    text: str


class ProjectUsageRow(SQLModel, table=True):
    """GPU-seconds a project used, decayed with the fair-share half-life up to `update_time`."""

    __tablename__ = "sched_project_usage"

    project: str = Field(max_length=63, primary_key=True)
    gpu_seconds: float = 0.0
    update_time: datetime
