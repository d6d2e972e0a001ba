"""metric value indexes end with their owner's id

Orderings by a metric break ties by the run or version id; with that id as the last column of
the value indexes, the index gives the whole order and a page is read without sorting, on
PostgreSQL even before its statistics exist.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-02 13:10:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_INDEXES = [
    ("reg_run_metrics", "ix_reg_run_metrics_key_value", ["key", "value"], "run_id"),
    ("reg_run_metrics", "ix_reg_run_metrics_experiment_key_value", ["experiment_id", "key", "value"], "run_id"),
    ("reg_version_metrics", "ix_reg_version_metrics_key_value", ["key", "value"], "version_id"),
    ("reg_version_metrics", "ix_reg_version_metrics_model_key_value", ["model_id", "key", "value"], "version_id"),
]


def upgrade() -> None:
    for table, name, columns, owner in _INDEXES:
        op.drop_index(name, table_name=table)
        op.create_index(name, table, [*columns, owner], unique=False)


def downgrade() -> None:
    for table, name, columns, _ in _INDEXES:
        op.drop_index(name, table_name=table)
        op.create_index(name, table, columns, unique=False)
