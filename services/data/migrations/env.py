"""Alembic environment of the data service: runs on the connection the runtime passes in."""

from alembic import context

from atelier.runtime.database import run_migrations
from services.data.tables import metadata

run_migrations(context, metadata, table_prefix="data_")
