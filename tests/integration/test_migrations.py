"""Every service's alembic history builds exactly the schema its models declare, on both databases."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from atelier.runtime.database import create_engine, migrate
from services.data import server as data_server
from services.data.tables import metadata as data_metadata


def test_data_migrations_match_models(database_url: str) -> None:
    engine = create_engine(database_url)
    migrate(engine, data_server.MIGRATIONS, "alembic_version_data")
    migrate(engine, data_server.MIGRATIONS, "alembic_version_data")  # a second start is a no-op
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"version_table": "alembic_version_data"})
        differences = compare_metadata(context, data_metadata)
    differences = [d for d in differences if not (d[0] == "remove_table" and d[1].name.startswith("alembic_version"))]
    engine.dispose()
    assert differences == []
