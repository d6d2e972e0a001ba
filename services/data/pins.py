"""Pins: references from other services (model lineage, runs) that keep versions and artifacts."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlmodel import col, select

from atelier.errors import InvalidArgument, NotFound
from atelier.names import parse_name
from atelier.runtime.pagination import decode_token, page_size
from services.data.artifacts import Artifacts
from services.data.catalog import HasManifest, _page
from services.data.store import now
from services.data.tables import PinRow


class Pins:
    """Create, list and delete pins on dataset versions and artifacts."""

    def __init__(self, artifacts: Artifacts) -> None:
        self.artifacts = artifacts
        self.catalog = artifacts.catalog
        self.store = artifacts.store

    def target(self, name: str) -> HasManifest:
        """The version or artifact a name refers to, with its canonical name."""
        if "/artifacts/" in name:
            return self.artifacts.get(name.split("/pins/")[0])
        return self.catalog.get_version(name.split("/pins/")[0])

    def create(self, parent: str, owner: str) -> tuple[PinRow, str]:
        if not owner or len(owner) > 400:
            raise InvalidArgument(
                "pin.owner is required: the resource name holding the reference (at most 400 characters)",
                metadata={"field": "pin.owner"},
            )
        target = self.target(parent)
        project = target.name.split("/")[1]
        with self.store.session() as session:
            existing = session.exec(select(PinRow).where(PinRow.target == target.name, PinRow.owner == owner)).first()
            if existing is not None:
                return existing, target.name
            project_row = self.store.project(session, project)
            assert project_row.id is not None
            row = PinRow(
                pin_id=uuid.uuid4().hex[:16],
                target=target.name,
                project_id=project_row.id,
                owner=owner,
                create_time=now(),
            )
            session.add(row)
        return row, target.name

    def list(self, parent: str, size: int, token: str) -> tuple[Sequence[PinRow], str, str]:
        target = self.target(parent)
        limit = page_size(size)
        with self.store.session() as session:
            rows = session.exec(
                select(PinRow)
                .where(PinRow.target == target.name, col(PinRow.pin_id) > decode_token(token, ""))
                .order_by(col(PinRow.pin_id))
                .limit(limit + 1)
            ).all()
        page, next_token = _page(rows, limit, lambda r: r.pin_id)
        return page, next_token, target.name

    def delete(self, name: str) -> None:
        if "/pins/" not in name:
            raise InvalidArgument(f"invalid pin name {name!r}: expected {{target}}/pins/{{pin}}")
        target_name, _, pin_id = name.rpartition("/pins/")
        parse_name(pin_id, "{pin}")
        target = self.target(target_name)
        with self.store.session() as session:
            row = session.exec(select(PinRow).where(PinRow.pin_id == pin_id, PinRow.target == target.name)).first()
            if row is None:
                raise NotFound(f"pin {name!r} not found", metadata={"resource": name})
            session.delete(row)
