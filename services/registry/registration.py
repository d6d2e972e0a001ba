"""Group commit of model-version registrations.

Registrations that arrive together are written together: one transaction reserves their numbers,
one `BatchCreatePins` call per project pins their lineage in the data service, and one transaction
inserts the versions with their index rows. A version becomes visible only in that last
transaction, so its lineage is always pinned before anyone can see it; a registration whose pins
are refused fails alone (leaving an unused number behind) and the others go on.

There is no background thread: the first caller to find nobody writing becomes the leader, writes
everything queued, then hands the lead to the next waiting caller, so no caller serves others for
longer than one group.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from atelier.runtime.database import transaction
from services.registry.datalink import DataLink
from services.registry.tables import (
    ModelRow,
    ModelVersionRow,
    VersionDatasetRow,
    VersionMetricRow,
    VersionParamRow,
    VersionTagRow,
)

_MODELS: sa.Table = ModelRow.__table__  # type: ignore[attr-defined]
_VERSIONS: sa.Table = ModelVersionRow.__table__  # type: ignore[attr-defined]
_METRICS: sa.Table = VersionMetricRow.__table__  # type: ignore[attr-defined]
_PARAMS: sa.Table = VersionParamRow.__table__  # type: ignore[attr-defined]
_TAGS: sa.Table = VersionTagRow.__table__  # type: ignore[attr-defined]
_DATASETS: sa.Table = VersionDatasetRow.__table__  # type: ignore[attr-defined]
# The data service takes at most this many pins in one call.
MAX_PINS_PER_CALL = 1000
# Statements built once: building one costs more than running it on SQLite.
_RESERVE = (
    sa.update(_MODELS)
    .where(_MODELS.c.id == sa.bindparam("model_id"))
    .values(last_number=_MODELS.c.last_number + sa.bindparam("count"))
    .returning(_MODELS.c.last_number)
)
_INSERT_VERSIONS = sa.insert(_VERSIONS).returning(_VERSIONS.c.id, sort_by_parameter_order=True)
_INSERT_INDEX = {table: sa.insert(table) for table in (_METRICS, _PARAMS, _TAGS, _DATASETS)}


@dataclass(eq=False)
class Registration:
    """One version to write: its row (without number and pins), index rows and what to pin."""

    project: str
    model_id: int
    model_name: str
    row: dict[str, Any]
    metrics: dict[str, float]
    params: dict[str, tuple[str, float | None]]
    tags: dict[str, str]
    datasets: list[str]
    targets: list[str]
    number: int = 0
    version_id: int = 0
    pins: list[str] = field(default_factory=list)
    error: BaseException | None = None
    _ready: threading.Event = field(default_factory=threading.Event, init=False, repr=False)
    _lead: bool = field(default=False, init=False, repr=False)

    @property
    def name(self) -> str:
        return f"projects/{self.project}/models/{self.model_name}/versions/v{self.number}"


class Registrations:
    """Writes registrations in groups (see the module's docstring)."""

    def __init__(self, engine: Engine, data: DataLink, now: Callable[[], datetime]) -> None:
        self.engine = engine
        self.data = data
        self.now = now
        self._lock = threading.Lock()
        self._queue: list[Registration] = []
        self._leading = False

    def commit(self, item: Registration) -> Registration:
        """Write `item` (with whatever else is queued); its number, id and pins are set on return."""
        with self._lock:
            self._queue.append(item)
            lead = not self._leading
            self._leading = True
        if not lead:
            item._ready.wait()
        if lead or item._lead:
            self._lead_one_group()
        if item.error is not None:
            raise item.error
        return item

    def _lead_one_group(self) -> None:
        with self._lock:
            group, self._queue = self._queue, []
        try:
            self.write(group)
        finally:
            for item in group:
                if item.error is None and not item.version_id:
                    item.error = RuntimeError("registration was interrupted")
                item._ready.set()
            with self._lock:
                if self._queue:
                    self._queue[0]._lead = True
                    self._queue[0]._ready.set()
                else:
                    self._leading = False

    def write(self, group: list[Registration]) -> None:
        """Write a group now, setting each one's number, id and pins, or its error (the caller
        must be the only one writing through this object meanwhile)."""
        try:
            self._reserve(group)
        except Exception as error:  # noqa: BLE001 - handed to every caller of the group
            for item in group:
                item.error = error
            return
        pinned = self._pin(group)
        if not pinned:
            return
        try:
            self._insert(pinned)
        except Exception:  # noqa: BLE001 - retried one by one so only the culprit fails
            for item in pinned:
                try:
                    self._insert([item])
                except Exception as error:  # noqa: BLE001 - handed to its caller
                    item.error = error
                    self._unpin(item)

    def _reserve(self, group: Sequence[Registration]) -> None:
        """Take the next version numbers of each model in one atomic update per model."""
        by_model: dict[int, list[Registration]] = {}
        for item in group:
            by_model.setdefault(item.model_id, []).append(item)
        with transaction(self.engine) as session:
            connection = session.connection()
            for model_id, items in by_model.items():
                last = connection.execute(_RESERVE, {"model_id": model_id, "count": len(items)}).scalar_one()
                for offset, item in enumerate(items):
                    item.number = last - len(items) + 1 + offset

    def _pin(self, group: Sequence[Registration]) -> list[Registration]:
        """Pin each registration's targets, a project's in one call; those pinned."""
        by_project: dict[str, list[Registration]] = {}
        for item in group:
            by_project.setdefault(item.project, []).append(item)
        for project, items in by_project.items():
            for chunk in _chunks(items):
                self._pin_chunk(project, chunk)
        return [item for item in group if item.error is None]

    def _pin_chunk(self, project: str, items: list[Registration]) -> None:
        try:
            pins = self.data.pin_groups(project, [(item.targets, item.name) for item in items])
        except Exception as error:  # noqa: BLE001 - the caller gets it, or each is tried alone
            if len(items) == 1:
                items[0].error = error
                return
            for item in items:
                self._pin_chunk(project, [item])
            return
        for item, names in zip(items, pins, strict=True):
            item.pins = names

    def _insert(self, items: Sequence[Registration]) -> None:
        stamp = self.now()
        rows = [
            {**item.row, "model_id": item.model_id, "number": item.number, "pins": item.pins, "create_time": stamp}
            for item in items
        ]
        with transaction(self.engine) as session:
            connection = session.connection()
            ids = connection.execute(_INSERT_VERSIONS, rows).scalars()
            for item, version_id in zip(items, ids, strict=True):
                item.version_id = version_id
            _index(connection, items)
        for item, row in zip(items, rows, strict=True):
            item.row = row

    def _unpin(self, item: Registration) -> None:
        for pin in item.pins:
            self.data.unpin(pin)


def _chunks(items: list[Registration]) -> list[list[Registration]]:
    """Consecutive runs of registrations with at most MAX_PINS_PER_CALL pins in all."""
    chunks: list[list[Registration]] = [[]]
    count = 0
    for item in items:
        if chunks[-1] and count + len(item.targets) > MAX_PINS_PER_CALL:
            chunks.append([])
            count = 0
        chunks[-1].append(item)
        count += len(item.targets)
    return chunks


def _index(connection: Connection, items: Sequence[Registration]) -> None:
    """The key/value rows filters and orderings run on."""
    metrics = [
        {"version_id": i.version_id, "model_id": i.model_id, "key": k, "value": v}
        for i in items
        for k, v in i.metrics.items()
    ]
    params = [
        {"version_id": i.version_id, "key": k, "value": v, "value_num": n}
        for i in items
        for k, (v, n) in i.params.items()
    ]
    tags = [{"version_id": i.version_id, "key": k, "value": v} for i in items for k, v in i.tags.items()]
    datasets = [{"version_id": i.version_id, "dataset": d} for i in items for d in i.datasets]
    for table, rows in ((_METRICS, metrics), (_PARAMS, params), (_TAGS, tags), (_DATASETS, datasets)):
        if rows:
            connection.execute(_INSERT_INDEX[table], rows)
