"""Alembic environment of the scheduler: runs on the connection the runtime passes in."""

from alembic import context

from atelier.runtime.database import run_migrations
from services.scheduler.tables import metadata

run_migrations(context, metadata, table_prefix="sched_")
