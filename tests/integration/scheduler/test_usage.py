"""Fair-share usage survives a scheduler restart (SQLite and PostgreSQL)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from types import MappingProxyType

import pytest
from sqlalchemy.engine import Engine

from atelier import scheduling as core
from atelier.runtime.database import create_engine, migrate, transaction
from atelier.scheduler.v1 import resources_pb2 as pb
from services.scheduler.agent.discovery import DeclaredInventory
from services.scheduler.catalogue import card_spec
from services.scheduler.cycle import Cycle
from services.scheduler.jobs import Jobs
from services.scheduler.nodes import Nodes
from services.scheduler.server import MIGRATIONS
from services.scheduler.settings import SchedulerSettings
from services.scheduler.usage import load_usage, save_usage
from tests.integration.scheduler.conftest import inventory

HOUR = 3600.0


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    made = create_engine(database_url)
    migrate(made, MIGRATIONS, "alembic_version_scheduler")
    yield made
    made.dispose()


def test_rows_written_at_different_times_load_decayed_to_the_newest(engine: Engine) -> None:
    with transaction(engine) as session:
        save_usage(session, core.FairShareUsage(1000.0, MappingProxyType({"vision": 100.0})))
    with transaction(engine) as session:
        save_usage(session, core.FairShareUsage(1000.0 + HOUR, MappingProxyType({"speech": 50.0})))
    loaded = load_usage(engine, half_life_s=HOUR)
    assert loaded.as_of == pytest.approx(1000.0 + HOUR)
    assert dict(loaded.gpu_seconds) == pytest.approx({"vision": 50.0, "speech": 50.0})


def test_an_empty_table_is_no_usage(engine: Engine) -> None:
    assert load_usage(engine, HOUR) == core.FairShareUsage()


def test_a_restarted_cycle_remembers_what_projects_used(engine: Engine, tmp_path: Path) -> None:
    settings = SchedulerSettings(home=tmp_path, usage_save_interval_seconds=0.0)
    found = DeclaredInventory(inventory("A100-80", "A100-80"), card_spec).inventory()
    Nodes(engine, 1.0).register(pb.Node(address="n1", cards=found.cards, links=found.links), "n1")
    jobs = Jobs(engine, settings.priority_classes, lambda job, shape: None, lambda job, project: job)
    resources = pb.Resources(gpus_per_node=2)
    jobs.create_job("projects/vision", pb.Job(command=["python", "train.py"], resources=resources), "big")

    cycle = Cycle(engine, settings)
    assert cycle.run() == 1
    time.sleep(0.2)
    cycle.run()
    used = cycle.usage.gpu_seconds["vision"]
    assert used >= 2 * 0.2 * 0.99

    restarted = Cycle(engine, settings)
    assert restarted.usage.gpu_seconds["vision"] == pytest.approx(used, rel=1e-6)
    assert restarted.usage.as_of == pytest.approx(cycle.usage.as_of, abs=1e-3)
