"""Pins: references from other services (model lineage, runs) that keep versions and artifacts."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import NamedTuple

import sqlalchemy as sa
from sqlmodel import Session, col, select

from atelier.errors import InvalidArgument, NotFound
from atelier.names import parse_name
from atelier.runtime.pagination import decode_token, page_size
from services.data.artifacts import Artifacts
from services.data.catalog import VERSION, HasManifest, _page
from services.data.store import now
from services.data.tables import PinRow

_PINS: sa.Table = PinRow.__table__  # type: ignore[attr-defined]


class CreatedPin(NamedTuple):
    """A pin as `create_many` returns it (what its message needs)."""

    target: str
    pin_id: str
    owner: str
    create_time: datetime


class PinTarget(NamedTuple):
    """A pinnable resource: its canonical name, its project and that project's id."""

    name: str
    project: str
    project_id: int


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

    def create(self, parent: str, owner: str) -> tuple[CreatedPin, str]:
        return self.create_many([(parent, owner)])[0]

    def create_many(
        self, requests: Sequence[tuple[str, str]], project: str | None = None
    ) -> list[tuple[CreatedPin, str]]:
        """Pin each `(target, owner)` in one transaction; pinning twice for an owner returns the pin.

        Each distinct target is resolved once, the existing pins are read in one query and the new
        ones written in one statement, so a call costs a few statements whatever its size (a
        registry group pins one artifact for every version it writes)."""
        if len(requests) > 1000:
            raise InvalidArgument(f"{len(requests)} pins in one call; at most 1000")
        for _, owner in requests:
            if not owner or len(owner) > 400:
                raise InvalidArgument(
                    "pin.owner is required: the resource name holding the reference (at most 400 characters)",
                    metadata={"field": "pin.owner"},
                )
        with self.store.session() as session:
            targets = {parent: self._resolve(session, parent) for parent in dict.fromkeys(p for p, _ in requests)}
            if project is not None:
                for target in targets.values():
                    if target.project != project:
                        raise InvalidArgument(
                            f"{target.name} is not in projects/{project}", metadata={"field": "requests.parent"}
                        )
            wanted = list(dict.fromkeys((targets[parent].name, owner) for parent, owner in requests))
            pins = _existing(session, wanted)
            project_ids = {target.name: target.project_id for target in targets.values()}
            stamp = now()
            added = [
                CreatedPin(name, uuid.uuid4().hex[:16], owner, stamp)
                for name, owner in wanted
                if (name, owner) not in pins
            ]
            if added:
                rows = [{**pin._asdict(), "project_id": project_ids[pin.target]} for pin in added]
                session.connection().execute(_INSERT, rows)
            pins.update(((pin.target, pin.owner), pin) for pin in added)
        return [(pins[targets[parent].name, owner], targets[parent].name) for parent, owner in requests]

    def _resolve(self, session: Session, name: str) -> PinTarget:
        """The canonical name and project of the version or artifact `name` refers to."""
        name = name.split("/pins/")[0]
        if "/artifacts/" in name:
            return PinTarget(*self.artifacts.locate(session, name))
        parts = parse_name(name, VERSION)
        version = self.catalog.resolve(session, parts["project"], parts["dataset"], parts["version"])
        return PinTarget(version.name, version.project, version.dataset.project_id)

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


# One INSERT run with every new row (the driver's executemany).
_INSERT = sa.insert(_PINS)
_EXISTING = sa.select(_PINS.c.target, _PINS.c.pin_id, _PINS.c.owner, _PINS.c.create_time).where(
    _PINS.c.target.in_(sa.bindparam("targets", expanding=True)),
    _PINS.c.owner.in_(sa.bindparam("owners", expanding=True)),
)


def _existing(session: Session, wanted: Sequence[tuple[str, str]]) -> dict[tuple[str, str], CreatedPin]:
    """The pins among `wanted` (target, owner) pairs that exist already, in one query."""
    names = {"targets": sorted({t for t, _ in wanted}), "owners": sorted({o for _, o in wanted})}
    pairs = set(wanted)
    found = (CreatedPin(*row) for row in session.connection().execute(_EXISTING, names))
    return {(pin.target, pin.owner): pin for pin in found if (pin.target, pin.owner) in pairs}
