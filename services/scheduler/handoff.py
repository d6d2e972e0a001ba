"""Jobs an external engine runs (Slurm): handed over, followed and copied back, by a periodic job.

Each round submits the queued jobs of that executor that the engine does not hold yet, asks the
engine for the state of every job it holds (one call for all), copies their new output into the log
and moves them on as the agents' jobs move: attempts, retries, the end. Everything it knows is in the
database (`external_id`, `external_active`, `log_offset`), so a restarted scheduler picks up where
it left off.
"""

from __future__ import annotations

import logging
import time
from datetime import datetime

from google.protobuf import json_format
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from atelier.errors import FailedPrecondition, Unavailable
from atelier.runtime.database import transaction
from atelier.runtime.timestamps import epoch_seconds
from atelier.scheduler.v1 import resources_pb2 as pb
from services.scheduler.executors.base import Executor, ExternalState, Phase, Submission
from services.scheduler.jobs import ENDED, QUEUED, end_attempt, job_name, spec_of, utcnow
from services.scheduler.logs import add_lines
from services.scheduler.outcomes import attempt_failed, preempted
from services.scheduler.spec import resolve_shape
from services.scheduler.tables import AttemptRow, JobRow

log = logging.getLogger(__name__)
LOST_AFTER_SECONDS = 120.0
"""A job the engine has not known for this long (in its queue or its accounting) failed."""
SUBMIT_BATCH = 50
"""Most jobs handed over per round."""


class Handoff:
    """Moves the jobs of one executor kind between the database and the external engine."""

    def __init__(self, engine: Engine, kind: int, executor: Executor, label: str) -> None:
        self.engine = engine
        self.kind = kind
        self.executor = executor
        self.label = label
        self._missing_since: dict[str, float] = {}

    def run(self) -> None:
        """One round: hand over what waits, then follow what the engine holds."""
        self.submit_queued()
        self.follow()

    def submit_queued(self) -> None:
        with Session(self.engine) as session:
            rows = session.exec(
                select(JobRow)
                .where(JobRow.executor == self.kind, col(JobRow.state).in_(QUEUED), ~col(JobRow.external_active))
                .order_by(col(JobRow.id))
                .limit(SUBMIT_BATCH)
            ).all()
        for row in rows:
            if not self._submit(row):
                return  # the engine cannot be reached: the others would fail alike

    def _submit(self, row: JobRow) -> bool:
        spec = spec_of(row)
        created = epoch_seconds(row.create_time)
        submission = Submission(job_name(row), row.attempt + 1, spec, resolve_shape(spec.resources), created)
        try:
            submitted = self.executor.submit(submission)
        except Unavailable as error:
            self._note(row, f"waiting: {error.message}")
            return False
        except FailedPrecondition as error:
            self._refused(row, error.message)
            return True
        with transaction(self.engine) as session:
            fresh = session.get(JobRow, row.id)
            taken = fresh is not None and fresh.state in QUEUED and not fresh.external_active
            if fresh is not None and taken:
                fresh.attempt = submission.attempt
                fresh.external_id = submitted.external_id
                fresh.external_active = True
                fresh.log_offset = 0
                fresh.reason = f"waiting: in {self.label} as job {submitted.external_id}"
                session.add(fresh)
                text = f"submitted to {self.label} as job {submitted.external_id}: {submitted.request}"
                line = pb.LogLine(attempt=fresh.attempt, stream=pb.LOG_STREAM_SYSTEM, text=text)
                add_lines(session, fresh, [line])
        if not taken:
            self._cancel_quietly(submitted.external_id)  # cancelled while it was being submitted
            return True
        log.info("%s handed to %s as job %s", submission.job_name, self.label, submitted.external_id)
        return True

    def follow(self) -> None:
        with Session(self.engine) as session:
            rows = session.exec(
                select(JobRow).where(JobRow.executor == self.kind, col(JobRow.external_active)).order_by(col(JobRow.id))
            ).all()
        if not rows:
            return
        try:
            states = self.executor.poll([row.external_id for row in rows])
        except (Unavailable, FailedPrecondition) as error:
            log.warning("cannot follow %s jobs: %s", self.label, error.message)
            return
        for row in rows:
            state = states.get(row.external_id) or self._missing(row.external_id)
            if state is None:
                continue
            self._missing_since.pop(row.external_id, None)
            if row.state in ENDED and not state.phase.ended:
                self._cancel_quietly(row.external_id)  # a cancel the engine has not acted on yet
            self._collect(row, state)

    def _missing(self, external_id: str) -> ExternalState | None:
        first = self._missing_since.setdefault(external_id, time.monotonic())
        if time.monotonic() - first < LOST_AFTER_SECONDS:
            return None
        return ExternalState(Phase.FAILED, f"is no longer known to {self.label}")

    def _collect(self, row: JobRow, state: ExternalState) -> None:
        """Copies new output (all of it once the job ended), then records the state."""
        position = row.log_offset
        while True:
            output = self.executor.read_output(job_name(row), row.external_id, position, state.phase.ended)
            with transaction(self.engine) as session:
                fresh = session.get(JobRow, row.id)
                if fresh is None or fresh.external_id != row.external_id or not fresh.external_active:
                    return
                lines = [pb.LogLine(attempt=fresh.attempt, stream=pb.LOG_STREAM_STDOUT, text=t) for t in output.lines]
                add_lines(session, fresh, lines)
                fresh.log_offset = output.position
                if not output.more:
                    self._move(session, fresh, state)
                session.add(fresh)
            position = output.position
            if not output.more:
                return

    def _move(self, session: Session, row: JobRow, state: ExternalState) -> None:
        now = utcnow()
        what = f"{self.label} job {row.external_id}"
        if state.phase == Phase.QUEUED:
            if row.state == pb.JOB_STATE_RUNNING:
                end_attempt(session, row, pb.JOB_STATE_PREEMPTED, f"requeued by {self.label}: {state.reason}", now)
                row.state = pb.JOB_STATE_PENDING
                row.attempt += 1  # its next run in Slurm is the next attempt
            if row.state in QUEUED:
                row.reason = f"waiting: in {self.label} as job {row.external_id}: {state.reason}"
            return
        if state.phase == Phase.RUNNING:
            if row.state in QUEUED:
                self._start_attempt(session, row, state, now)
            return
        row.external_active = False
        if row.state in ENDED:
            return  # cancelled here; the engine has now stopped it too
        if row.state in QUEUED:
            self._start_attempt(session, row, state, now)  # it ended between two looks
        reason = f"{what} {state.reason}"
        if state.phase == Phase.SUCCEEDED:
            end_attempt(session, row, pb.JOB_STATE_SUCCEEDED, reason, now)
            row.state, row.reason, row.end_time = pb.JOB_STATE_SUCCEEDED, reason, now
        elif state.phase == Phase.CANCELLED:
            end_attempt(session, row, pb.JOB_STATE_CANCELLED, reason, now)
            row.state, row.reason, row.end_time = pb.JOB_STATE_CANCELLED, reason, now
        elif state.phase == Phase.PREEMPTED:
            preempted(session, row, self.label, now)
        else:
            note = self.executor.explain(job_name(row), row.external_id)
            attempt_failed(session, row, f"{what} failed before the job started: {note}" if note else reason, now)

    def _start_attempt(self, session: Session, row: JobRow, state: ExternalState, now: datetime) -> None:
        hosts = ", ".join(state.hosts) or "hosts not reported"
        placement = pb.Placement(explanation=f"handed to {self.label} as job {row.external_id}; runs on {hosts}")
        for rank, host in enumerate(state.hosts):
            placement.nodes.add(node=f"nodes/{host}", rank=rank)
        session.add(
            AttemptRow(
                job_id=row.id or 0,
                number=row.attempt,
                placement=json_format.MessageToDict(placement, preserving_proto_field_name=True),
                start_time=now,
            )
        )
        row.state = pb.JOB_STATE_RUNNING
        row.start_time = now
        row.reason = f"running in {self.label} as job {row.external_id} on {hosts}"

    def _note(self, row: JobRow, reason: str) -> None:
        with transaction(self.engine) as session:
            fresh = session.get(JobRow, row.id)
            if fresh is not None and fresh.state in QUEUED and fresh.reason != reason:
                fresh.reason = reason
                session.add(fresh)

    def _refused(self, row: JobRow, message: str) -> None:
        """The engine will never take the job as asked: it fails at once, retries would not help."""
        with transaction(self.engine) as session:
            fresh = session.get(JobRow, row.id)
            if fresh is None or fresh.state not in QUEUED:
                return
            fresh.state = pb.JOB_STATE_FAILED
            fresh.reason = f"{self.label} refused the job: {message}"
            fresh.end_time = utcnow()
            session.add(fresh)

    def _cancel_quietly(self, external_id: str) -> None:
        try:
            self.executor.cancel(external_id)
        except (Unavailable, FailedPrecondition) as error:
            log.warning("cannot cancel %s job %s: %s", self.label, external_id, error.message)
