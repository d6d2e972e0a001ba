"""usage accounting

Revision ID: 0001
Revises:
Create Date: 2026-12-02 18:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "mon_usage",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("project", sa.String(length=63), nullable=False),
        sa.Column("job", sa.String(length=200), nullable=False),
        sa.Column("user", sa.String(length=200), nullable=False),
        sa.Column("node", sa.String(length=200), nullable=False),
        sa.Column("card_uuid", sa.String(length=100), nullable=False),
        sa.Column("hour", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column("gpu_seconds", sa.Float(), nullable=False),
        sa.Column("energy_joules", sa.Float(), nullable=False),
        sa.Column("first_time", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column("last_time", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column("simulated", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("job", "card_uuid", "hour"),
    )
    op.create_index("ix_mon_usage_project_hour", "mon_usage", ["project", "hour"])
    op.create_table(
        "mon_reports",
        sa.Column("node", sa.String(length=200), nullable=False),
        sa.Column("report_id", sa.String(length=100), nullable=False),
        sa.Column("receive_time", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("node", "report_id"),
    )
    op.create_index(op.f("ix_mon_reports_receive_time"), "mon_reports", ["receive_time"])


def downgrade() -> None:
    op.drop_index(op.f("ix_mon_reports_receive_time"), table_name="mon_reports")
    op.drop_table("mon_reports")
    op.drop_index("ix_mon_usage_project_hour", table_name="mon_usage")
    op.drop_table("mon_usage")
