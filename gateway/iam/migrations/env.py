"""Alembic environment of the IAM service: runs on the connection the runtime passes in."""

from alembic import context

from atelier.runtime.database import run_migrations
from gateway.iam.tables import metadata

run_migrations(context, metadata, table_prefix="iam_")
