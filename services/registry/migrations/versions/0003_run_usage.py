"""runs keep the GPU time and energy of their job

The monitor records a job's totals on every run naming the job (RecordJobUsage), so runs carry
them and the job column is indexed. Model versions read them from their lineage run.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-06 14:20:00
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
    with op.batch_alter_table("reg_runs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("usage_gpu_seconds", sa.Float(), nullable=False, server_default="0"))
        batch_op.add_column(sa.Column("usage_energy_joules", sa.Float(), nullable=False, server_default="0"))
        batch_op.add_column(sa.Column("usage_simulated", sa.Boolean(), nullable=False, server_default=sa.false()))
        batch_op.add_column(sa.Column("usage_time", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True))
        batch_op.create_index(batch_op.f("ix_reg_runs_job"), ["job"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("reg_runs", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_reg_runs_job"))
        for column in ("usage_time", "usage_simulated", "usage_energy_joules", "usage_gpu_seconds"):
            batch_op.drop_column(column)
