"""Experiments: the projects' groups of runs."""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from atelier.errors import AlreadyExists, NotFound
from atelier.names import parse_name, validate_id
from atelier.runtime.database import transaction
from atelier.runtime.pagination import decode_token, encode_token, page_size
from services.registry.tables import ExperimentRow, RunRow

EXPERIMENT = "projects/{project}/experiments/{experiment}"


def now() -> datetime:
    return datetime.now(UTC)


class Experiments:
    """Create, find and list experiments; an experiment's id is remembered once seen (experiments
    are never renamed or deleted)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._known: dict[tuple[str, str], int] = {}

    def create(self, parent: str, experiment_id: str, description: str) -> tuple[str, ExperimentRow]:
        project = parse_name(parent, "projects/{project}", "parent")["project"]
        validate_id("experiment", experiment_id)
        with transaction(self.engine) as session:
            if self.find(session, project, experiment_id, missing_ok=True):
                raise AlreadyExists(f"experiment {experiment_id!r} already exists in project {project!r}")
            row = ExperimentRow(project=project, name=experiment_id, description=description, create_time=now())
            session.add(row)
        return project, row

    def get(self, name: str) -> tuple[ExperimentRow, int]:
        parts = parse_name(name, EXPERIMENT)
        with transaction(self.engine) as session:
            row = self.find(session, parts["project"], parts["experiment"])
            assert row is not None
            count = session.exec(select(sa.func.count()).where(RunRow.experiment_id == row.id)).one()
        return row, count

    def page(self, parent: str, size: int, token: str) -> tuple[list[ExperimentRow], str]:
        project = parse_name(parent, "projects/{project}", "parent")["project"]
        limit = page_size(size)
        with transaction(self.engine) as session:
            rows = session.exec(
                select(ExperimentRow)
                .where(ExperimentRow.project == project, ExperimentRow.name > decode_token(token, ""))
                .order_by(col(ExperimentRow.name))
                .limit(limit + 1)
            ).all()
        if len(rows) > limit:
            return list(rows[:limit]), encode_token(rows[limit - 1].name)
        return list(rows), ""

    def ensure(self, project: str, name: str) -> int:
        """The experiment's id, creating it if missing (a concurrent creation of it is fine).
        Experiments are never renamed or deleted, so once seen they are remembered."""
        known = self._known.get((project, name))
        if known is not None:
            return known
        with transaction(self.engine) as session:
            row = self.find(session, project, name, missing_ok=True)
        if row is None:
            validate_id("experiment", name)
            with contextlib.suppress(AlreadyExists), transaction(self.engine) as session:
                session.add(ExperimentRow(project=project, name=name, create_time=now()))
            with transaction(self.engine) as session:
                row = self.find(session, project, name)
        assert row is not None
        assert row.id is not None
        self._known[(project, name)] = row.id
        return row.id

    def find(self, session: Session, project: str, name: str, missing_ok: bool = False) -> ExperimentRow | None:
        row = session.exec(
            select(ExperimentRow).where(ExperimentRow.project == project, ExperimentRow.name == name)
        ).first()
        if row is None and not missing_ok:
            raise NotFound(
                f"experiment {name!r} not found in project {project!r}",
                metadata={"resource": f"projects/{project}/experiments/{name}"},
            )
        return row
