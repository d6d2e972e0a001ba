"""The GPU time and energy of the jobs runs name: recorded on the runs by the monitor (absolute
totals, so a repeated call changes nothing); a model version shows its lineage run's."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlmodel import Session, col

from atelier.errors import InvalidArgument
from atelier.names import parse_name
from atelier.registry.v1 import resources_pb2 as pb
from atelier.runtime.database import core_transaction
from services.registry.experiments import now
from services.registry.tables import RunRow

JOB = "projects/{project}/jobs/{job}"


@dataclass(frozen=True)
class Usage:
    """A job's totals as last recorded."""

    gpu_seconds: float
    energy_joules: float
    simulated: bool
    time: datetime


def of_run(row: RunRow) -> Usage | None:
    """The usage recorded on a run; None until the monitor recorded some."""
    if row.usage_time is None:
        return None
    return Usage(row.usage_gpu_seconds, row.usage_energy_joules, row.usage_simulated, row.usage_time)


def record_job_usage(engine: Engine, job: str, usage: pb.ResourceUsage) -> int:
    """Set the totals of `job` on every run naming it; how many runs that was."""
    parse_name(job, JOB, "job")
    for field in ("gpu_seconds", "energy_joules"):
        value = getattr(usage, field)
        if not math.isfinite(value) or value < 0:
            raise InvalidArgument(
                f"usage.{field} must be a finite number >= 0, got {value}", metadata={"field": f"usage.{field}"}
            )
    with core_transaction(engine) as connection:
        result = connection.execute(
            sa.update(RunRow)
            .where(col(RunRow.job) == job)
            .values(
                usage_gpu_seconds=usage.gpu_seconds,
                usage_energy_joules=usage.energy_joules,
                usage_simulated=usage.simulated,
                usage_time=now(),
            )
        )
    return int(result.rowcount)


_BY_RUN_ID = sa.select(
    col(RunRow.run_id),
    col(RunRow.usage_gpu_seconds),
    col(RunRow.usage_energy_joules),
    col(RunRow.usage_simulated),
    col(RunRow.usage_time),
).where(col(RunRow.run_id).in_(sa.bindparam("ids", expanding=True)), col(RunRow.usage_time).is_not(None))


def usage_of_runs(session: Session, runs: Iterable[str]) -> dict[str, Usage]:
    """The recorded usage of the named runs (`projects/p/experiments/e/runs/r`), in one query by
    their ids (unique across experiments); runs with none recorded, or gone, are left out."""
    names = {name.rsplit("/", 1)[-1]: name for name in runs if name}
    if not names:
        return {}
    rows = session.execute(_BY_RUN_ID, {"ids": list(names)}).all()
    return {names[run_id]: Usage(seconds, joules, simulated, time) for run_id, seconds, joules, simulated, time in rows}
