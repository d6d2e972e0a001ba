"""Every service's alembic history builds exactly the schema its models declare, on both databases."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from atelier.runtime.database import create_engine, migrate
from gateway.iam import server as iam_server
from services.data import server as data_server
from services.data.tables import metadata
from services.inference import server as inference_server
from services.monitor import server as monitor_server
from services.registry import server as registry_server
from services.scheduler import server as scheduler_server

SERVICES = [
    ("data", data_server.MIGRATIONS, "data_"),
    ("registry", registry_server.MIGRATIONS, "reg_"),
    ("scheduler", scheduler_server.MIGRATIONS, "sched_"),
    ("inference", inference_server.MIGRATIONS, "inf_"),
    ("monitor", monitor_server.MIGRATIONS, "mon_"),
    ("iam", iam_server.MIGRATIONS, "iam_"),
]


@pytest.mark.parametrize(("service", "migrations", "prefix"), SERVICES, ids=[s[0] for s in SERVICES])
def test_migrations_match_models(database_url: str, service: str, migrations: Path, prefix: str) -> None:
    engine = create_engine(database_url)
    version_table = f"alembic_version_{service}"
    migrate(engine, migrations, version_table)
    migrate(engine, migrations, version_table)  # a second start is a no-op
    own = sa.MetaData()
    for table in metadata.sorted_tables:
        if table.name.startswith(prefix):
            table.to_metadata(own)
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"version_table": version_table})
        differences = compare_metadata(context, own)
    engine.dispose()
    assert [d for d in differences if not (d[0] == "remove_table" and d[1].name.startswith("alembic_version"))] == []
