"""Group commit of model-version registrations.

Registrations that arrive together are written together: one transaction reserves their numbers,
one `BatchCreatePins` call per project pins their lineage in the data service, and one transaction
inserts the versions with their index rows. A version becomes visible only in that last
transaction, so its lineage is always pinned before anyone can see it.

The unit that succeeds or fails is a `Batch`: one registration from CreateModelVersion, or all of a
BatchCreateModelVersions call. A batch whose pins are refused fails alone (leaving its unused
numbers behind, and releasing any pins it got) and the others of the group go on.

One writer thread (started with the first registration) writes whatever is queued each time it is
free, so registrations that arrive while a group is written form the next group. A caller waits
either on a thread event (`commit`) or, on the event loop, on a future (`commit_async`): an async
handler queues its registration without a hop to a worker thread, and the writer wakes each event
loop once per group, not once per caller.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from atelier.errors import Unavailable
from atelier.runtime.database import core_transaction
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
T = TypeVar("T")
# How long the writer may wait for as many callers as its recent groups held, and how many groups
# it remembers: a group's two transactions and pin call cost about 2 ms of CPU however many
# versions it holds.
COALESCE_SECONDS = 0.005
RECENT_GROUPS = 8
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

    @property
    def name(self) -> str:
        return f"projects/{self.project}/models/{self.model_name}/versions/v{self.number}"


@dataclass(eq=False)
class Batch:
    """Registrations written all or none; `error` is why they were not."""

    items: list[Registration]
    error: BaseException | None = None
    # Set once written or failed: an event for a waiting thread, or a future of an event loop.
    ready: threading.Event | None = None
    waiter: asyncio.Future[None] | None = None

    @property
    def pin_count(self) -> int:
        return sum(len(item.targets) for item in self.items)

    @property
    def written(self) -> bool:
        return all(item.version_id for item in self.items)


class Registrations:
    """Writes registrations in groups (see the module's docstring)."""

    def __init__(self, engine: Engine, data: DataLink, now: Callable[[], datetime]) -> None:
        self.engine = engine
        self.data = data
        self.now = now
        self._queued = threading.Condition(threading.Lock())
        self._queue: list[Batch] = []
        self._writer: threading.Thread | None = None
        self._closed = False
        # Callers in the last few groups: how many the writer waits a moment for.
        self._recent: deque[int] = deque(maxlen=RECENT_GROUPS)
        self._expected = 1

    def commit(self, items: list[Registration]) -> list[Registration]:
        """Write `items` all or none (with whatever else is queued), blocking until done; their
        numbers, ids and pins are set on return, in order."""
        batch = Batch(items, ready=threading.Event())
        self._enqueue(batch)
        assert batch.ready is not None
        batch.ready.wait()
        if batch.error is not None:
            raise batch.error
        return items

    async def commit_async(self, items: list[Registration]) -> list[Registration]:
        """`commit` for a caller on an event loop: waits for the writer without holding a thread."""
        batch = Batch(items, waiter=asyncio.get_running_loop().create_future())
        self._enqueue(batch)
        assert batch.waiter is not None
        await batch.waiter
        if batch.error is not None:
            raise batch.error
        return items

    def close(self) -> None:
        """Stop the writer once the queue is written (registrations after this fail)."""
        with self._queued:
            self._closed = True
            writer = self._writer
            self._queued.notify()
        if writer is not None:
            writer.join()

    def _enqueue(self, batch: Batch) -> None:
        with self._queued:
            if self._closed:
                raise Unavailable("the registry is shutting down; retry the registration")
            self._queue.append(batch)
            if self._writer is None:
                self._writer = threading.Thread(target=self._write_forever, name="registry-writer", daemon=True)
                self._writer.start()
            if len(self._queue) == 1 or len(self._queue) >= self._expected:
                self._queued.notify()

    def _write_forever(self) -> None:
        while group := self._next_group():
            try:
                self.write(group)
            except BaseException as error:  # noqa: BLE001 - the writer outlives one bad group
                for batch in group:
                    if batch.error is None and not batch.written:
                        batch.error = error
            finally:
                _wake(group)

    def _next_group(self) -> list[Batch]:
        """Everything queued, once there is something (nothing once closed). While recent groups
        held more callers than are queued, wait up to `COALESCE_SECONDS` for as many (the callers
        of the last group coming back), so that concurrent callers share one group's transactions
        and pin call; a wait that gathers nobody forgets the recent sizes, so a caller alone waits
        at most once."""
        with self._queued:
            while not self._queue and not self._closed:
                self._queued.wait()
            deadline = time.monotonic() + COALESCE_SECONDS
            while len(self._queue) < self._expected and not self._closed:
                left = deadline - time.monotonic()
                if left <= 0 or not self._queued.wait(left):
                    self._recent.clear()
                    break
            group, self._queue = self._queue, []
        self._recent.append(len(group))
        self._expected = max(self._recent)
        return group

    def write(self, group: list[Batch]) -> None:
        """Write a group now, setting each registration's number, id and pins, or each batch's
        error (the caller must be the only one writing through this object meanwhile)."""
        try:
            self._reserve([item for batch in group for item in batch.items])
        except Exception as error:  # noqa: BLE001 - handed to every caller of the group
            for batch in group:
                batch.error = error
            return
        pinned = self._pin(group)
        if not pinned:
            return
        try:
            self._insert(pinned)
        except Exception:  # noqa: BLE001 - retried batch by batch so only the culprit fails
            for batch in pinned:
                try:
                    self._insert([batch])
                except Exception as error:  # noqa: BLE001 - handed to its caller
                    batch.error = error
                    self._unpin(batch)

    def _reserve(self, items: Sequence[Registration]) -> None:
        """Take the next version numbers of each model in one atomic update per model; a model's
        versions are numbered in queue order, so a batch's in its request order."""
        by_model: dict[int, list[Registration]] = {}
        for item in items:
            by_model.setdefault(item.model_id, []).append(item)
        with core_transaction(self.engine) as connection:
            for model_id, same in by_model.items():
                last = connection.execute(_RESERVE, {"model_id": model_id, "count": len(same)}).scalar_one()
                for offset, item in enumerate(same):
                    item.number = last - len(same) + 1 + offset

    def _pin(self, group: Sequence[Batch]) -> list[Batch]:
        """Pin each registration's targets, a project's in one call where they fit; the batches
        whose pins were all made."""
        by_project: dict[str, list[Batch]] = {}
        for batch in group:
            by_project.setdefault(batch.items[0].project, []).append(batch)
        for project, batches in by_project.items():
            for chunk in _runs(batches, lambda batch: batch.pin_count):
                self._pin_chunk(project, chunk)
        return [batch for batch in group if batch.error is None]

    def _pin_chunk(self, project: str, batches: list[Batch]) -> None:
        """Pin the batches' targets (in one call, unless one batch alone has more than the data
        service takes); on a refusal release what was pinned and try each batch alone."""
        items = [item for batch in batches for item in batch.items]
        try:
            for part in _runs(items, lambda item: len(item.targets)):
                pins = self.data.pin_groups(project, [(item.targets, item.name) for item in part])
                for item, names in zip(part, pins, strict=True):
                    item.pins = names
        except Exception as error:  # noqa: BLE001 - the caller gets it, or each is tried alone
            for batch in batches:
                self._unpin(batch)
            if len(batches) == 1:
                batches[0].error = error
                return
            for batch in batches:
                self._pin_chunk(project, [batch])

    def _insert(self, batches: Sequence[Batch]) -> None:
        items = [item for batch in batches for item in batch.items]
        stamp = self.now()
        rows = [
            {**item.row, "model_id": item.model_id, "number": item.number, "pins": item.pins, "create_time": stamp}
            for item in items
        ]
        with core_transaction(self.engine) as connection:
            ids = connection.execute(_INSERT_VERSIONS, rows).scalars().all()
            _index(connection, items, ids)
        for item, row, version_id in zip(items, rows, ids, strict=True):
            item.row = row
            item.version_id = version_id

    def _unpin(self, batch: Batch) -> None:
        for item in batch.items:
            for pin in item.pins:
                self.data.unpin(pin)
            item.pins = []


def _wake(group: Sequence[Batch]) -> None:
    """Tell each batch's caller it is done: threads by their event, each event loop once."""
    by_loop: dict[asyncio.AbstractEventLoop, list[Batch]] = {}
    for batch in group:
        if batch.error is None and not batch.written:
            batch.error = RuntimeError("registration was interrupted")
        if batch.ready is not None:
            batch.ready.set()
        if batch.waiter is not None:
            by_loop.setdefault(batch.waiter.get_loop(), []).append(batch)
    for loop, batches in by_loop.items():
        with contextlib.suppress(RuntimeError):  # the loop closed: nobody waits any more
            loop.call_soon_threadsafe(_resolve, batches)


def _resolve(batches: Sequence[Batch]) -> None:
    for batch in batches:
        if batch.waiter is not None and not batch.waiter.done():
            batch.waiter.set_result(None)


def _runs(things: list[T], pins: Callable[[T], int]) -> list[list[T]]:
    """Consecutive runs of `things` with at most MAX_PINS_PER_CALL pins in all (one with more is a
    run of its own)."""
    runs: list[list[T]] = [[]]
    count = 0
    for thing in things:
        if runs[-1] and count + pins(thing) > MAX_PINS_PER_CALL:
            runs.append([])
            count = 0
        runs[-1].append(thing)
        count += pins(thing)
    return runs


def _index(connection: Connection, items: Sequence[Registration], ids: Sequence[int]) -> None:
    """The key/value rows filters and orderings run on, of each item with its new version id."""
    pairs = list(zip(items, ids, strict=True))
    metrics = [
        {"version_id": n, "model_id": i.model_id, "key": k, "value": v} for i, n in pairs for k, v in i.metrics.items()
    ]
    params = [
        {"version_id": n, "key": k, "value": v, "value_num": num} for i, n in pairs for k, (v, num) in i.params.items()
    ]
    tags = [{"version_id": n, "key": k, "value": v} for i, n in pairs for k, v in i.tags.items()]
    datasets = [{"version_id": n, "dataset": d} for i, n in pairs for d in i.datasets]
    for table, rows in ((_METRICS, metrics), (_PARAMS, params), (_TAGS, tags), (_DATASETS, datasets)):
        if rows:
            connection.execute(_INSERT_INDEX[table], rows)
