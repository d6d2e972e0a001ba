"""Fair-share usage kept in the database, so a scheduler restart does not forgive past usage.

The cycle advances the decayed GPU-seconds of every project (`atelier.scheduling.FairShareUsage`) in
memory and writes them to `sched_project_usage` every few seconds; a starting scheduler reads them back.
Each row carries the time its value was decayed to, so rows written at different moments are brought to
one common time on load.
"""

from __future__ import annotations

from datetime import UTC, datetime
from types import MappingProxyType

from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from atelier import scheduling as core
from atelier.runtime.timestamps import epoch_seconds
from services.scheduler.tables import ProjectUsageRow


def load_usage(engine: Engine, half_life_s: float) -> core.FairShareUsage:
    """The stored usage, every project decayed to the newest row's time (empty when nothing is stored)."""
    with Session(engine) as session:
        rows = list(session.exec(select(ProjectUsageRow)))
    if not rows:
        return core.FairShareUsage()
    as_of = max(epoch_seconds(row.update_time) for row in rows)
    gpu_seconds = {
        row.project: row.gpu_seconds * 2.0 ** (-(as_of - epoch_seconds(row.update_time)) / half_life_s) for row in rows
    }
    return core.FairShareUsage(as_of, MappingProxyType(gpu_seconds))


def save_usage(session: Session, usage: core.FairShareUsage) -> None:
    """Write every project's usage as of `usage.as_of` (in the caller's transaction)."""
    moment = datetime.fromtimestamp(usage.as_of, UTC)
    for project, gpu_seconds in usage.gpu_seconds.items():
        row = session.get(ProjectUsageRow, project)
        if row is None:
            row = ProjectUsageRow(project=project, gpu_seconds=gpu_seconds, update_time=moment)
        else:
            row.gpu_seconds = gpu_seconds
            row.update_time = moment
        session.add(row)
