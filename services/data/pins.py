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
        return self.create_many([(parent, owner)])[0]

    def create_many(self, requests: Sequence[tuple[str, str]], project: str | None = None) -> list[tuple[PinRow, str]]:
        """Pin each `(target, owner)` in one transaction; pinning twice for an owner returns the pin."""
        if len(requests) > 1000:
            raise InvalidArgument(f"{len(requests)} pins in one call; at most 1000")
        targets = []
        for parent, owner in requests:
            if not owner or len(owner) > 400:
                raise InvalidArgument(
                    "pin.owner is required: the resource name holding the reference (at most 400 characters)",
                    metadata={"field": "pin.owner"},
                )
            target = self.target(parent).name
            if project is not None and target.split("/")[1] != project:
                raise InvalidArgument(f"{target} is not in projects/{project}", metadata={"field": "requests.parent"})
            targets.append((target, owner))
        created: list[tuple[PinRow, str]] = []
        with self.store.session() as session:
            for target, owner in targets:
                existing = session.exec(select(PinRow).where(PinRow.target == target, PinRow.owner == owner)).first()
                if existing is None:
                    project_row = self.store.project(session, target.split("/")[1])
                    assert project_row.id is not None
                    existing = PinRow(
                        pin_id=uuid.uuid4().hex[:16],
                        target=target,
                        project_id=project_row.id,
                        owner=owner,
                        create_time=now(),
                    )
                    session.add(existing)
                created.append((existing, target))
        return created

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
