"""Jobs: submission (validated, refused when the cluster could never run it), lookup, listing, cancel."""

from __future__ import annotations

import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

from google.protobuf import json_format
from opentelemetry import propagate
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from atelier.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound
from atelier.names import parse_name, validate_id
from atelier.runtime.database import transaction
from atelier.runtime.fields import check_enum, check_relative_path
from atelier.runtime.pagination import decode_token, encode_token, page_size
from atelier.scheduler.v1 import resources_pb2 as pb
from services.scheduler import spec as specs
from services.scheduler.executors.base import Executor
from services.scheduler.tables import AttemptRow, JobRow, TaskRow

JOB = "projects/{project}/jobs/{job}"
ENDED = (pb.JOB_STATE_SUCCEEDED, pb.JOB_STATE_FAILED, pb.JOB_STATE_CANCELLED)
QUEUED = (pb.JOB_STATE_PENDING, pb.JOB_STATE_PREEMPTED)

Feasibility = Callable[[pb.Job, specs.Shape], None]
"""Raises FAILED_PRECONDITION naming why no node of the cluster could ever run the job."""
DatasetResolver = Callable[[str, str], str]
"""(reference, project) -> canonical dataset version name; FAILED_PRECONDITION when unknown."""

_OUTPUT_FIELDS = (
    "name",
    "state",
    "reason",
    "create_time",
    "start_time",
    "end_time",
    "restart_count",
    "placement",
    "attempts",
    "external_id",
)


def current_traceparent() -> str:
    """The W3C traceparent of the current span (the submitting call's), empty outside a trace."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier.get("traceparent", "")


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass
class JobView:
    """A job with its attempts, oldest first."""

    row: JobRow
    attempts: list[AttemptRow] = field(default_factory=list)

    @property
    def name(self) -> str:
        return f"projects/{self.row.project}/jobs/{self.row.job_id}"

    def spec(self) -> pb.Job:
        return spec_of(self.row)


def spec_of(row: JobRow) -> pb.Job:
    """The submitted job (input fields only)."""
    return json_format.ParseDict(row.spec, pb.Job())


def job_name(row: JobRow) -> str:
    return f"projects/{row.project}/jobs/{row.job_id}"


class Jobs:
    """Submitting, reading and cancelling jobs; the cycle and the agents move them on."""

    def __init__(
        self,
        engine: Engine,
        priority_classes: dict[str, int],
        feasibility: Feasibility,
        datasets: DatasetResolver,
        default_executor: int = pb.EXECUTOR_KIND_AGENTS,
        executors: Mapping[int, Executor] | None = None,
    ) -> None:
        self.engine = engine
        self.priority_classes = priority_classes
        self.feasibility = feasibility
        self.datasets = datasets
        self.default_executor = default_executor
        self.executors = dict(executors or {})
        """External engines by executor kind: a cancel of their jobs goes to them first."""

    def create_job(self, parent: str, job: pb.Job, job_id: str) -> JobView:
        project = parse_name(parent, "projects/{project}", "parent")["project"]
        job_id = validate_id("job", job_id) if job_id else f"job-{secrets.token_hex(4)}"
        submitted = self._validated(job, project)
        row = JobRow(
            project=project,
            job_id=job_id,
            user=submitted.user,
            spec=json_format.MessageToDict(submitted, preserving_proto_field_name=True),
            state=pb.JOB_STATE_PENDING,
            reason="waiting: queued",
            priority_class=submitted.priority_class,
            executor=submitted.executor,
            gpus=specs.resolve_shape(submitted.resources).gpus,
            create_time=utcnow(),
            trace_parent=current_traceparent(),
        )
        try:
            with transaction(self.engine) as session:
                session.add(row)
        except AlreadyExists as error:
            raise AlreadyExists(f"job {job_id!r} already exists in project {project!r}") from error
        return JobView(row)

    def _validated(self, job: pb.Job, project: str) -> pb.Job:
        """The job's input fields, checked, with defaults filled in and datasets resolved."""
        clean = pb.Job()
        clean.CopyFrom(job)
        for name in _OUTPUT_FIELDS:
            clean.ClearField(name)  # type: ignore[arg-type]
        specs.check_enums(clean)
        specs.check_command(clean)
        specs.check_env(dict(clean.env))
        specs.check_limits(clean)
        specs.check_working_directory(clean.working_directory)
        clean.priority_class = specs.check_priority_class(clean.priority_class, self.priority_classes)
        if clean.executor == pb.EXECUTOR_KIND_UNSPECIFIED:
            clean.executor = self.default_executor  # type: ignore[assignment]
        if clean.launcher == pb.LAUNCHER_UNSPECIFIED:
            clean.launcher = pb.LAUNCHER_TORCHRUN
        shape = specs.resolve_shape(clean.resources)
        self.feasibility(clean, shape)
        for dataset in clean.datasets:
            dataset.version = self.datasets(dataset.dataset, project)
            if not dataset.path:
                dataset.path = dataset.version.split("/")[3]
            check_relative_path("job.datasets.path", dataset.path)  # inside the job's data directory
        paths = [dataset.path for dataset in clean.datasets]
        if len(set(paths)) != len(paths):
            repeated = sorted({p for p in paths if paths.count(p) > 1})
            raise InvalidArgument(
                f"two datasets would be fetched into {', '.join(repeated)}: give each its own path",
                metadata={"field": "job.datasets.path"},
            )
        return clean

    def get_job(self, name: str) -> JobView:
        with Session(self.engine) as session:
            return self._view(session, self._row(session, name))

    def list_jobs(self, parent: str, states: list[int], size: int, token: str) -> tuple[list[JobView], str]:
        project = parse_name(parent, "projects/{project}", "parent", wildcard=True)["project"]
        for state in states:
            check_enum("states", state, pb.JobState)
        limit = page_size(size)
        before = decode_token(token, None, int)
        query = select(JobRow).order_by(col(JobRow.id).desc()).limit(limit + 1)
        if project != "-":
            query = query.where(JobRow.project == project)
        if states:
            query = query.where(col(JobRow.state).in_(states))
        if before is not None:
            query = query.where(col(JobRow.id) < before)
        with Session(self.engine) as session:
            rows = list(session.exec(query))
            views = [self._view(session, row) for row in rows[:limit]]
        more = len(rows) > limit
        return views, encode_token(rows[limit - 1].id) if more else ""

    def cancel_job(self, name: str) -> JobView:
        """Ends a queued job at once; a running one is CANCELLED now and its tasks are no longer
        handed to agents, which stop them (their exit is recorded when reported). A job an external
        engine holds is cancelled there first (UNAVAILABLE, and nothing changed, when it cannot be)."""
        with Session(self.engine) as session:
            row = self._row(session, name)
            _check_cancellable(name, row)
            external = self.executors.get(row.executor) if row.external_active else None
            if external is not None:
                external.cancel(row.external_id)
        with transaction(self.engine) as session:
            row = self._row(session, name)
            if external is not None and row.state in ENDED:
                return self._view(session, row)  # it ended in the engine meanwhile
            _check_cancellable(name, row)
            now = utcnow()
            if row.state == pb.JOB_STATE_RUNNING:
                end_attempt(session, row, pb.JOB_STATE_CANCELLED, "cancelled by a user", now)
            row.state = pb.JOB_STATE_CANCELLED
            row.reason = "cancelled by a user"
            row.end_time = now
            session.add(row)
            return self._view(session, row)

    def _row(self, session: Session, name: str) -> JobRow:
        row = find_job(session, parse_name(name, JOB))
        if row is None:
            raise NotFound(f"job {name} not found", metadata={"job": name})
        return row

    def _view(self, session: Session, row: JobRow) -> JobView:
        attempts = session.exec(
            select(AttemptRow).where(AttemptRow.job_id == row.id).order_by(col(AttemptRow.number))
        ).all()
        return JobView(row, list(attempts))


def _check_cancellable(name: str, row: JobRow) -> None:
    if row.state in ENDED:
        raise FailedPrecondition(
            f"job {name} already ended ({pb.JobState.Name(row.state)}); only PENDING, RUNNING or "  # type: ignore[arg-type]
            "PREEMPTED jobs can be cancelled"
        )


def find_job(session: Session, parts: dict[str, str]) -> JobRow | None:
    """The job of parsed name parts (`project`, `job`), None when there is none."""
    return session.exec(select(JobRow).where(JobRow.project == parts["project"], JobRow.job_id == parts["job"])).first()


def end_attempt(session: Session, row: JobRow, outcome: int, reason: str, now: datetime) -> None:
    """Closes the job's current attempt; its tasks stay active (holding their cards) until their
    agents report the processes gone."""
    attempt = session.exec(
        select(AttemptRow).where(AttemptRow.job_id == row.id, AttemptRow.number == row.attempt)
    ).first()
    if attempt is None or attempt.end_time is not None:
        return
    attempt.end_time = now
    attempt.outcome = outcome
    attempt.reason = reason
    session.add(attempt)


def active_tasks(session: Session, job_id: int, attempt: int) -> list[TaskRow]:
    return list(
        session.exec(select(TaskRow).where(TaskRow.job_id == job_id, TaskRow.attempt == attempt, col(TaskRow.active)))
    )
