"""Alembic environment of the registry: runs on the connection the runtime passes in."""

from alembic import context

from atelier.runtime.database import run_migrations
from services.registry.tables import metadata

run_migrations(context, metadata, table_prefix="reg_")
