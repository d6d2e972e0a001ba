"""Job logs: lines the agents stream in, read back from an offset (live or after the end)."""

from __future__ import annotations

from datetime import UTC

from sqlalchemy import insert
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from atelier.errors import InvalidArgument, NotFound
from atelier.names import parse_name
from atelier.runtime.database import transaction
from atelier.runtime.fields import check_enum
from atelier.runtime.timestamps import to_datetime
from atelier.scheduler.v1 import resources_pb2 as pb
from services.scheduler.jobs import JOB, find_job, utcnow
from services.scheduler.tables import JobRow, LogRow

MAX_LINE = 16 * 1024
"""Longer lines are cut (with a marker) so one runaway print cannot bloat the log table."""


class Logs:
    """Appending and reading job log lines; a line's offset is its row id."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def append(self, job: str, lines: list[pb.LogLine]) -> None:
        if not lines:
            return
        for index, line in enumerate(lines):
            check_line(line, f"lines[{index}]")
        with transaction(self.engine) as session:
            add_lines(session, _job(session, job), lines)

    def read(self, job: str, offset: int, limit: int = 1000) -> tuple[list[LogRow], int]:
        """Lines after `offset`, oldest first, and the job's state."""
        if offset < 0:
            raise InvalidArgument(f"offset must be >= 0, got {offset}")
        with Session(self.engine) as session:
            row = _job(session, job)
            lines = session.exec(
                select(LogRow)
                .where(LogRow.job_id == row.id, col(LogRow.id) > offset)
                .order_by(col(LogRow.id))
                .limit(limit)
            ).all()
            return list(lines), row.state


def check_line(line: pb.LogLine, where: str) -> None:
    """A line an agent sent: a known stream (unset means stdout), a valid time, an attempt and rank of 0 or
    more."""
    check_enum(f"{where}.stream", line.stream, pb.LogStream)
    if line.HasField("time"):
        to_datetime(line.time, f"{where}.time")
    for field in ("attempt", "rank"):
        value = getattr(line, field)
        if value < 0:
            raise InvalidArgument(
                f"{where}.{field} is {value}; allowed: 0 or more", metadata={"field": f"{where}.{field}"}
            )


def add_lines(session: Session, row: JobRow, lines: list[pb.LogLine]) -> None:
    """Appends lines to a job's log in the caller's transaction (lines without a time get now)."""
    if not lines:
        return
    now = utcnow()
    values = [
        {
            "job_id": row.id,
            "attempt": line.attempt,
            "rank": line.rank,
            "stream": line.stream or pb.LOG_STREAM_STDOUT,
            "time": line.time.ToDatetime(tzinfo=UTC) if line.HasField("time") else now,
            "text": line.text if len(line.text) <= MAX_LINE else line.text[:MAX_LINE] + " [line cut]",
        }
        for line in lines
    ]
    session.execute(insert(LogRow), values)


def _job(session: Session, name: str) -> JobRow:
    row = find_job(session, parse_name(name, JOB, "job"))
    if row is None:
        raise NotFound(f"job {name} not found", metadata={"job": name})
    return row
