"""The audit log: one row per write call through any service (who, what, when, from where, result)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import insert
from sqlalchemy.engine import Engine
from sqlmodel import select

from atelier.runtime.database import transaction
from atelier.runtime.timestamps import utc
from gateway.iam.tables import AuditRow


@dataclass(frozen=True)
class AuditEvent:
    time: datetime
    principal: str
    method: str
    project: str = ""
    resource: str = ""
    peer: str = ""
    code: str = "OK"
    service: str = ""
    id: int = 0

    @property
    def name(self) -> str:
        return f"auditEvents/{self.id}"


class AuditLog:
    """Appends events and reads them back newest first."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def write(self, events: Sequence[AuditEvent]) -> int:
        if not events:
            return 0
        rows = [
            {
                "time": utc(e.time),
                "principal": e.principal[:200],
                "method": e.method[:200],
                "project": e.project[:63],
                "resource": e.resource[:400],
                "peer": e.peer[:200],
                "code": e.code[:40],
                "service": e.service[:40],
            }
            for e in events
        ]
        with transaction(self.engine) as session:
            session.execute(insert(AuditRow), rows)
        return len(rows)

    def page(
        self,
        project: str = "",
        principal: str = "",
        start: datetime | None = None,
        end: datetime | None = None,
        before_id: int = 0,
        limit: int = 100,
    ) -> list[AuditEvent]:
        query = select(AuditRow).order_by(AuditRow.id.desc()).limit(limit)  # type: ignore[union-attr]
        if project:
            query = query.where(AuditRow.project == project)
        if principal:
            query = query.where(AuditRow.principal == principal)
        if start is not None:
            query = query.where(AuditRow.time >= start)
        if end is not None:
            query = query.where(AuditRow.time < end)
        if before_id:
            query = query.where(AuditRow.id < before_id)  # type: ignore[operator]
        with transaction(self.engine) as session:
            return [
                AuditEvent(
                    utc(r.time), r.principal, r.method, r.project, r.resource, r.peer, r.code, r.service, r.id or 0
                )
                for r in session.exec(query)
            ]
