"""usage rows note when they last changed

The monitor publishes each changed job's totals to the registry; rows from before this revision
are marked changed now, so every job's usage reaches the registry once after the upgrade.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-06 14:30:00
"""

from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("mon_usage", schema=None) as batch_op:
        batch_op.add_column(sa.Column("update_time", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True))
    usage = sa.table("mon_usage", sa.column("update_time", sqlmodel.sql.sqltypes.UTCDateTime()))
    op.execute(usage.update().values(update_time=datetime.now(UTC)))
    with op.batch_alter_table("mon_usage", schema=None) as batch_op:
        batch_op.alter_column("update_time", existing_type=sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False)
        batch_op.create_index(batch_op.f("ix_mon_usage_update_time"), ["update_time"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("mon_usage", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_mon_usage_update_time"))
        batch_op.drop_column("update_time")
