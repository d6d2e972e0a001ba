"""Alembic environment of the inference service: runs on the connection the runtime passes in."""

from alembic import context

from atelier.runtime.database import run_migrations
from services.inference.tables import metadata

run_migrations(context, metadata, table_prefix="inf_")
