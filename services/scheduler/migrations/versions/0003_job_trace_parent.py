"""jobs keep the trace context of their submission

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02 19:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("sched_jobs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("trace_parent", sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False, server_default=""))


def downgrade() -> None:
    with op.batch_alter_table("sched_jobs", schema=None) as batch_op:
        batch_op.drop_column("trace_parent")
