"""GPU time and energy per job, card and hour: what agents report, and the totals people ask for."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, func, select

from atelier.errors import InvalidArgument
from atelier.monitor.v1 import monitor_service_pb2 as pb
from atelier.names import parse_name
from atelier.runtime.database import transaction
from atelier.runtime.timestamps import to_datetime, utc
from services.monitor.tables import ReportRow, UsageRow

MAX_SAMPLES = 10_000
MAX_CARD_WATTS = 10_000
"""The most power a sample may claim for its card over its interval: ten times the largest cards' board
power (about 1 kW), so a glitching counter or a wrong sender cannot store energies that swamp, or
overflow, the sums."""
GROUPINGS: dict[int, str] = {
    pb.USAGE_GROUPING_UNSPECIFIED: "job",
    pb.USAGE_GROUPING_JOB: "job",
    pb.USAGE_GROUPING_PROJECT: "project",
    pb.USAGE_GROUPING_USER: "user",
}


def hour_of(moment: datetime) -> datetime:
    """The start of the hour `moment` falls in (UTC)."""
    return moment.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


# The start of the calendar's last hour: an end past it would round up past the year 9999.
_LAST_HOUR = datetime(9999, 12, 31, 23, tzinfo=UTC)


@dataclass(frozen=True)
class Totals:
    project: str
    job: str
    user: str
    gpu_seconds: float
    energy_joules: float
    cards: int
    first_time: datetime
    last_time: datetime
    simulated: bool


@dataclass(frozen=True)
class JobTotals:
    """A job's GPU time and energy over all its cards and hours."""

    job: str
    gpu_seconds: float
    energy_joules: float
    simulated: bool


class Accounting:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def report(self, node: str, report_id: str, samples: list[pb.UsageSample]) -> tuple[int, bool]:
        """Add a report's samples; (samples recorded, whether the report id was seen before)."""
        parse_name(node, "nodes/{node}", "node")
        if not report_id or len(report_id) > 100:
            raise InvalidArgument(f"report_id must be 1 to 100 characters, got {len(report_id)}")
        if len(samples) > MAX_SAMPLES:
            raise InvalidArgument(f"{len(samples)} samples in one report; at most {MAX_SAMPLES}")
        checked = [_checked(s, i) for i, s in enumerate(samples)]
        now = datetime.now(UTC)
        with transaction(self.engine) as session:
            if session.get(ReportRow, (node, report_id)) is not None:
                return 0, True
            session.add(ReportRow(node=node, report_id=report_id, receive_time=now))
            for sample, project, start, end in checked:
                self._add(session, node, sample, project, start, end, now)
        return len(checked), False

    @staticmethod
    def _add(
        session: Session, node: str, sample: pb.UsageSample, project: str, start: datetime, end: datetime, now: datetime
    ) -> None:
        hour = hour_of(start)
        row = session.exec(
            select(UsageRow).where(
                UsageRow.job == sample.job, UsageRow.card_uuid == sample.card_uuid, UsageRow.hour == hour
            )
        ).first()
        if row is None:
            row = UsageRow(
                project=project,
                job=sample.job,
                user=sample.user,
                node=node,
                card_uuid=sample.card_uuid,
                hour=hour,
                first_time=utc(start),
                last_time=utc(end),
                simulated=sample.simulated,
                update_time=now,
            )
        row.gpu_seconds += sample.gpu_seconds
        row.energy_joules += sample.energy_joules
        row.first_time = min(utc(row.first_time), utc(start))
        row.last_time = max(utc(row.last_time), utc(end))
        row.simulated = row.simulated or sample.simulated
        row.update_time = now
        session.add(row)

    def query(
        self, parent: str, start: datetime | None, end: datetime | None, grouping: int
    ) -> tuple[list[Totals], Totals]:
        """Totals grouped by job, project or user over whole hours from `start` to `end`."""
        project = parse_name(parent, "projects/{project}", "parent", wildcard=True)["project"]
        by = GROUPINGS.get(grouping)
        if by is None:
            raise InvalidArgument(f"group_by {grouping} is not one of JOB, PROJECT, USER")
        if start is not None and end is not None and end <= start:
            raise InvalidArgument(f"end_time {end.isoformat()} is not after start_time {start.isoformat()}")
        keys = {"job": [UsageRow.project, UsageRow.job, UsageRow.user], "project": [UsageRow.project],
                "user": [UsageRow.project, UsageRow.user]}[by]  # fmt: skip
        columns = [col(c) for c in keys]
        query = sa.select(
            *columns,
            func.sum(col(UsageRow.gpu_seconds)),
            func.sum(col(UsageRow.energy_joules)),
            func.count(sa.distinct(col(UsageRow.card_uuid))),
            func.min(col(UsageRow.first_time)),
            func.max(col(UsageRow.last_time)),
            func.max(sa.cast(col(UsageRow.simulated), sa.Integer)),
        ).group_by(*columns)
        if project != "-":
            query = query.where(col(UsageRow.project) == project)
        if start is not None:
            query = query.where(col(UsageRow.hour) >= hour_of(start))
        if end is not None and end < _LAST_HOUR:  # an end in the calendar's last hour bounds nothing
            query = query.where(col(UsageRow.hour) < hour_of(end + timedelta(hours=1) - timedelta(microseconds=1)))
        with Session(self.engine) as session:
            found = session.execute(query).all()
        rows = []
        for row in found:
            named = dict(zip(by_names(by), row[: len(keys)], strict=True))
            seconds, joules, cards, first, last, simulated = row[len(keys) :]
            rows.append(
                Totals(
                    named.get("project", ""),
                    named.get("job", ""),
                    named.get("user", ""),
                    float(seconds),
                    float(joules),
                    int(cards),
                    utc(first),
                    utc(last),
                    bool(simulated),
                )
            )
        rows.sort(key=lambda t: (-t.gpu_seconds, t.project, t.job, t.user))
        return rows, _total(rows)

    def jobs_changed_since(self, since: datetime) -> list[JobTotals]:
        """The all-time totals of each job a report added to after `since`."""
        changed = sa.select(col(UsageRow.job)).where(col(UsageRow.update_time) > since).distinct()
        query = (
            sa.select(
                col(UsageRow.job),
                func.sum(col(UsageRow.gpu_seconds)),
                func.sum(col(UsageRow.energy_joules)),
                func.max(sa.cast(col(UsageRow.simulated), sa.Integer)),
            )
            .where(col(UsageRow.job).in_(changed))
            .group_by(col(UsageRow.job))
            .order_by(col(UsageRow.job))
        )
        with Session(self.engine) as session:
            rows = session.execute(query).all()
        return [JobTotals(job, float(seconds), float(joules), bool(flag)) for job, seconds, joules, flag in rows]

    def forget_reports(self, older_than: timedelta) -> int:
        """Drop remembered report ids older than `older_than` (retries come within seconds)."""
        limit = datetime.now(UTC) - older_than
        with transaction(self.engine) as session:
            result = session.execute(sa.delete(ReportRow).where(col(ReportRow.receive_time) < limit))
            return int(result.rowcount or 0)  # type: ignore[attr-defined]


def by_names(by: str) -> list[str]:
    return {"job": ["project", "job", "user"], "project": ["project"], "user": ["project", "user"]}[by]


def _total(rows: list[Totals]) -> Totals:
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    return Totals(
        "",
        "",
        "",
        sum(r.gpu_seconds for r in rows),
        sum(r.energy_joules for r in rows),
        sum(r.cards for r in rows),
        min((r.first_time for r in rows), default=epoch),
        max((r.last_time for r in rows), default=epoch),
        any(r.simulated for r in rows),
    )


def _checked(sample: pb.UsageSample, index: int) -> tuple[pb.UsageSample, str, datetime, datetime]:
    where = f"samples[{index}]"
    project = parse_name(sample.job, "projects/{project}/jobs/{job}", f"{where}.job")["project"]
    if not sample.card_uuid:
        raise InvalidArgument(f"{where}.card_uuid is empty; give the card's UUID (GPU-...)")
    if not sample.HasField("start_time") or not sample.HasField("end_time"):
        raise InvalidArgument(f"{where} needs start_time and end_time")
    start = to_datetime(sample.start_time, f"{where}.start_time")
    end = to_datetime(sample.end_time, f"{where}.end_time")
    if end < start:
        raise InvalidArgument(f"{where}.end_time {end.isoformat()} is before its start_time {start.isoformat()}")
    for field in ("gpu_seconds", "energy_joules"):
        value = getattr(sample, field)
        if not math.isfinite(value) or value < 0:
            raise InvalidArgument(f"{where}.{field} must be a finite number >= 0, got {value}")
    interval = (end - start).total_seconds()
    if sample.gpu_seconds > interval + 1e-6:
        raise InvalidArgument(
            f"{where}.gpu_seconds {sample.gpu_seconds:g} is longer than its interval ({interval:g} s)"
        )
    # A second's slack: a counter may advance in steps rather than continuously.
    most = MAX_CARD_WATTS * (interval + 1)
    if sample.energy_joules > most:
        raise InvalidArgument(
            f"{where}.energy_joules {sample.energy_joules:g} is more than a card draws in its interval "
            f"({interval:g} s); allowed: 0 to {most:g} J (at most {MAX_CARD_WATTS} W)",
            metadata={"field": f"{where}.energy_joules"},
        )
    return sample, project, start, end
