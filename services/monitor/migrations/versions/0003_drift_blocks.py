"""drift sample blocks: windows outlive a restart

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-06 14:45:00
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
    op.create_table(
        "mon_drift_blocks",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("deployment", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("model_version", sqlmodel.sql.sqltypes.AutoString(length=300), nullable=False),
        sa.Column("feature_names", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("receive_time", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column("rows", sa.Integer(), nullable=False),
        sa.Column("features", sa.LargeBinary(), nullable=False),
        sa.Column("predictions", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_mon_drift_blocks_window", "mon_drift_blocks", ["deployment", "model_version", "id"])
    op.create_index(op.f("ix_mon_drift_blocks_receive_time"), "mon_drift_blocks", ["receive_time"])


def downgrade() -> None:
    op.drop_index(op.f("ix_mon_drift_blocks_receive_time"), table_name="mon_drift_blocks")
    op.drop_index("ix_mon_drift_blocks_window", table_name="mon_drift_blocks")
    op.drop_table("mon_drift_blocks")
