"""How a job moves on when its processes end or its node is lost: success, retry or failure."""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Session, select

from atelier.scheduler.v1 import agent_service_pb2 as agent
from atelier.scheduler.v1 import resources_pb2 as pb
from services.scheduler.jobs import end_attempt, spec_of
from services.scheduler.tables import AttemptRow, JobRow, TaskRow


def task_finished(session: Session, task: TaskRow, exit_code: int, message: str, now: datetime) -> None:
    """Records that a task's process is gone (its cards are free) and moves its job on."""
    task.active = False
    task.exit_code = exit_code
    task.message = message
    session.add(task)
    job = session.get(JobRow, task.job_id)
    if job is None or job.attempt != task.attempt or job.state != pb.JOB_STATE_RUNNING:
        return  # the attempt already ended (cancelled, preempted, another rank failed)
    if exit_code != 0:
        what = message or (f"exit code {exit_code}" if exit_code > 0 else f"killed by signal {-exit_code}")
        attempt_failed(session, job, f"{what} on nodes/{task.node} (rank {task.rank})", now)
        return
    others = session.exec(select(TaskRow).where(TaskRow.job_id == job.id, TaskRow.attempt == job.attempt)).all()
    if all(not t.active and t.exit_code == 0 for t in others):
        end_attempt(session, job, pb.JOB_STATE_SUCCEEDED, "every process exited with 0", now)
        job.state = pb.JOB_STATE_SUCCEEDED
        job.reason = "every process exited with 0"
        job.end_time = now
        session.add(job)


def attempt_failed(session: Session, job: JobRow, reason: str, now: datetime) -> None:
    """Ends the running attempt as FAILED; the job is requeued while retries are left."""
    end_attempt(session, job, pb.JOB_STATE_FAILED, reason, now)
    retries = spec_of(job).max_retries
    if job.restart_count < retries:
        job.restart_count += 1
        job.state = pb.JOB_STATE_PENDING
        job.reason = f"waiting: retry {job.restart_count} of {retries} after: {reason}"
    else:
        job.state = pb.JOB_STATE_FAILED
        job.reason = reason if not retries else f"{reason} (after {retries} retries)"
        job.end_time = now
    session.add(job)


def preempted(session: Session, job: JobRow, by: str, now: datetime) -> None:
    """Stops a running job to make room for `by`; it goes back to the queue as PREEMPTED."""
    reason = f"preempted by {by}; requeued"
    end_attempt(session, job, pb.JOB_STATE_PREEMPTED, reason, now)
    job.state = pb.JOB_STATE_PREEMPTED
    job.reason = reason
    session.add(job)


def apply_status(session: Session, task: TaskRow, status: agent.TaskStatus, now: datetime) -> None:
    """One task status from a heartbeat."""
    task.state = status.state
    if status.state == agent.TASK_STATE_EXITED:
        task_finished(session, task, status.exit_code, status.message, now)
    elif status.state == agent.TASK_STATE_FAILED_TO_START:
        task_finished(session, task, 127, status.message or "could not start", now)
    else:
        session.add(task)


def attempt_of(session: Session, job: JobRow) -> AttemptRow | None:
    return session.exec(select(AttemptRow).where(AttemptRow.job_id == job.id, AttemptRow.number == job.attempt)).first()


def is_live(job: JobRow, task: TaskRow) -> bool:
    """Whether a task should be running: its job runs this very attempt."""
    return job.state == pb.JOB_STATE_RUNNING and job.attempt == task.attempt
