"""Alembic environment of the monitor: runs on the connection the runtime passes in."""

from alembic import context

from atelier.runtime.database import run_migrations
from services.monitor.tables import metadata

run_migrations(context, metadata, table_prefix="mon_")
