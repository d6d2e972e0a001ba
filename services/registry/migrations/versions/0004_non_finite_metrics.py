"""runs keep NaN metric values (as NULL) and infinite ones

A diverging run logs NaN: its points and its latest value are kept, NaN as NULL (SQLite cannot hold NaN,
and NULL stays out of comparisons and of orderings by a metric on both databases); infinities are numbers
both databases hold and order.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-07 16:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TABLES = ("reg_metric_points", "reg_run_metrics")


def upgrade() -> None:
    for table in _TABLES:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.alter_column("value", existing_type=sa.Float(), nullable=True)


def downgrade() -> None:
    for table in _TABLES:
        op.execute(sa.text(f"DELETE FROM {table} WHERE value IS NULL"))
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.alter_column("value", existing_type=sa.Float(), nullable=False)
