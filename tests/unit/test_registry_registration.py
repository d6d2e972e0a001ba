"""Group commit of registrations: numbers, pins before visibility, a refused pin fails alone."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa

from atelier.errors import FailedPrecondition
from atelier.runtime.database import create_engine, migrate
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
        first = pool.submit(registrations.commit, _registration(1, "good"))
        data.held.wait()
        rest: list[Future[Registration]] = [
            pool.submit(registrations.commit, _registration(1, target)) for target in ("good", "bad", "good", "good")
        ]
        while len(registrations._queue) < 4:
            threading.Event().wait(0.001)
        data.hold.set()
        assert first.result().number == 1
        outcomes = [f.exception() or f.result() for f in rest]

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
