"""Group commit of registrations: numbers, pins before visibility, a refused pin fails alone."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa

from atelier.errors import FailedPrecondition, Unavailable
from atelier.runtime.database import create_engine, migrate
from services.registry import registration
from services.registry.registration import Registration, Registrations
from services.registry.server import MIGRATIONS


class FakeData:
    """Pins in memory; refuses any call holding the target `bad`, and can hold the first call."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []
        self.hold = threading.Event()
        self.held = threading.Event()
        self.unpinned: list[str] = []
        self.visible_when_pinned: list[int] = []

    def pin_groups(self, project: str, groups: Sequence[tuple[list[str], str]]) -> list[list[str]]:
        if not self.calls:
            self.held.set()
            self.hold.wait()
        self.calls.append([owner for _, owner in groups])
        if any("bad" in targets for targets, _ in groups):
            raise FailedPrecondition("bad target")
        return [[f"{target}/pins/{owner}" for target in targets] for targets, owner in groups]

    def unpin(self, pin: str) -> None:
        self.unpinned.append(pin)


def _registration(model_id: int, target: str) -> Registration:
    row = {"artifact": "projects/lab/artifacts/abc", "format": 1, "signature": {}, "lineage": {}, "metrics": {}}
    return Registration(
        project="lab",
        model_id=model_id,
        model_name="digits",
        row={**row, "tags": {}},
        metrics={"val_accuracy": 0.5},
        params={"lr": ("0.01", 0.01)},
        tags={},
        datasets=[],
        targets=[target],
    )


@pytest.fixture
def engine(tmp_path: Path) -> sa.Engine:
    engine = create_engine(f"sqlite:///{tmp_path / 'registry.db'}")
    migrate(engine, MIGRATIONS, "alembic_version_registry")
    with engine.begin() as connection:
        connection.execute(
            sa.text(
                "INSERT INTO reg_models (project, name, description, create_time, last_number) "
                "VALUES ('lab', 'digits', '', :now, 0)"
            ),
            {"now": datetime.now(UTC)},
        )
    return engine


def test_queued_registrations_are_written_as_one_group_and_a_refused_pin_fails_alone(engine: sa.Engine) -> None:
    data = FakeData()
    registrations = Registrations(engine, data, lambda: datetime.now(UTC))  # type: ignore[arg-type]
    with ThreadPoolExecutor(5) as pool:
        first = pool.submit(registrations.commit, [_registration(1, "good")])
        data.held.wait()
        rest: list[Future[list[Registration]]] = [
            pool.submit(registrations.commit, [_registration(1, target)]) for target in ("good", "bad", "good", "good")
        ]
        while len(registrations._queue) < 4:
            threading.Event().wait(0.001)
        data.hold.set()
        assert first.result()[0].number == 1
        outcomes = [f.exception() or f.result()[0] for f in rest]

    refused = [o for o in outcomes if isinstance(o, BaseException)]
    written = [o for o in outcomes if isinstance(o, Registration)]
    assert [type(e) for e in refused] == [FailedPrecondition]
    # The four queued ones were sent together once, then one by one after the refusal.
    assert len(data.calls[1]) == 4
    assert len(data.calls) == 6
    with engine.connect() as connection:
        rows = connection.execute(sa.text("SELECT number, pins FROM reg_model_versions ORDER BY number")).all()
        metric_rows = connection.execute(sa.text("SELECT COUNT(*) FROM reg_version_metrics")).scalar_one()
        last = connection.execute(sa.text("SELECT last_number FROM reg_models")).scalar_one()
    numbers = sorted(r.number for r in written)
    assert [r[0] for r in rows] == [1, *numbers]
    assert all('"good/pins/' in r[1] for r in rows)
    assert metric_rows == 4
    # Numbers are never reused: the refused one leaves a gap.
    assert last == 5
    assert data.unpinned == []


def _versions(engine: sa.Engine) -> list[tuple[int, str]]:
    with engine.connect() as connection:
        rows = connection.execute(sa.text("SELECT number, pins FROM reg_model_versions ORDER BY number")).all()
    return [(r[0], r[1]) for r in rows]


def test_a_batch_is_written_all_or_none_beside_other_registrations(engine: sa.Engine) -> None:
    data = FakeData()
    registrations = Registrations(engine, data, lambda: datetime.now(UTC))  # type: ignore[arg-type]
    with ThreadPoolExecutor(4) as pool:
        first = pool.submit(registrations.commit, [_registration(1, "good")])
        data.held.wait()
        refused = pool.submit(registrations.commit, [_registration(1, t) for t in ("good", "bad", "good")])
        single = pool.submit(registrations.commit, [_registration(1, "good")])
        batch = pool.submit(registrations.commit, [_registration(1, "good") for _ in range(3)])
        while len(registrations._queue) < 3:
            threading.Event().wait(0.001)
        data.hold.set()
        first.result()
        assert isinstance(refused.exception(), FailedPrecondition)
        numbers = [item.number for item in batch.result()]
        single.result()

    # The batch's versions are numbered in request order, one after another.
    assert numbers == list(range(numbers[0], numbers[0] + 3))
    written = [number for number, _ in _versions(engine)]
    assert written == sorted([1, single.result()[0].number, *numbers])
    with engine.connect() as connection:
        assert connection.execute(sa.text("SELECT COUNT(*) FROM reg_version_metrics")).scalar_one() == 5


def test_a_batch_with_more_pins_than_one_call_takes_releases_them_when_refused(engine: sa.Engine) -> None:
    data = FakeData()
    data.hold.set()
    registrations = Registrations(engine, data, lambda: datetime.now(UTC))  # type: ignore[arg-type]
    items = [_registration(1, "good") for _ in range(3)]
    for item in items:
        item.targets = [f"good-{n}" for n in range(400)]
    items[2].targets[-1] = "bad"

    with pytest.raises(FailedPrecondition):
        registrations.commit(items)

    # 1,200 pins: two calls (800, then 400 refused); the 800 made are released, nothing is visible.
    assert [len(call) for call in data.calls] == [2, 1]
    assert len(data.unpinned) == 800
    assert _versions(engine) == []
    items = [_registration(1, "good") for _ in range(3)]
    for item in items:
        item.targets = [f"good-{n}" for n in range(400)]
    assert [item.number for item in registrations.commit(items)] == [4, 5, 6]
    assert [len(json.loads(pins)) for _, pins in _versions(engine)] == [400, 400, 400]


def test_callers_on_an_event_loop_wait_without_a_thread_and_share_a_group(engine: sa.Engine) -> None:
    data = FakeData()
    registrations = Registrations(engine, data, lambda: datetime.now(UTC))  # type: ignore[arg-type]

    async def register() -> list[list[Registration]]:
        first = asyncio.create_task(registrations.commit_async([_registration(1, "good")]))
        await asyncio.to_thread(data.held.wait)
        rest = [asyncio.create_task(registrations.commit_async([_registration(1, "good")])) for _ in range(3)]
        while len(registrations._queue) < 3:
            await asyncio.sleep(0.001)
        data.hold.set()
        return await asyncio.gather(first, *rest)

    written = asyncio.run(register())

    assert sorted(items[0].number for items in written) == [1, 2, 3, 4]
    assert [len(call) for call in data.calls] == [1, 3]
    assert [number for number, _ in _versions(engine)] == [1, 2, 3, 4]
    registrations.close()


def test_closing_writes_what_is_queued_and_refuses_later_registrations(engine: sa.Engine) -> None:
    data = FakeData()
    registrations = Registrations(engine, data, lambda: datetime.now(UTC))  # type: ignore[arg-type]
    with ThreadPoolExecutor(2) as pool:
        first = pool.submit(registrations.commit, [_registration(1, "good")])
        data.held.wait()
        second = pool.submit(registrations.commit, [_registration(1, "good")])
        while not registrations._queue:
            threading.Event().wait(0.001)
        closing = pool.submit(registrations.close)
        data.hold.set()
        closing.result()

    assert [first.result()[0].number, second.result()[0].number] == [1, 2]
    with pytest.raises(Unavailable):
        registrations.commit([_registration(1, "good")])
    assert [number for number, _ in _versions(engine)] == [1, 2]


def test_the_writer_waits_for_as_many_callers_as_its_recent_groups_held(
    engine: sa.Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A long window, so that only the callers arriving end the wait.
    monkeypatch.setattr(registration, "COALESCE_SECONDS", 60.0)
    data = FakeData()
    registrations = Registrations(engine, data, lambda: datetime.now(UTC))  # type: ignore[arg-type]
    with ThreadPoolExecutor(4) as pool:
        first = pool.submit(registrations.commit, [_registration(1, "good")])
        data.held.wait()
        group = [pool.submit(registrations.commit, [_registration(1, "good")]) for _ in range(3)]
        while len(registrations._queue) < 3:
            threading.Event().wait(0.001)
        data.hold.set()
        first.result()
        for future in group:
            future.result()
        # The last group held 3 callers: one caller alone is held back until two more have come.
        late = [pool.submit(registrations.commit, [_registration(1, "good")])]
        threading.Event().wait(0.05)
        late += [pool.submit(registrations.commit, [_registration(1, "good")]) for _ in range(2)]
        numbers = sorted(future.result()[0].number for future in late)

    assert [len(call) for call in data.calls] == [1, 3, 3]
    assert numbers == [5, 6, 7]
    registrations.close()
