"""jobs run by an external engine: whether it is followed, how much of its output is copied

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-02 18:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = '0002'
down_revision: str | None = '0001'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('sched_jobs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('external_active', sa.Boolean(), nullable=False, server_default=sa.false()))
        batch_op.add_column(sa.Column('log_offset', sa.BigInteger(), nullable=False, server_default='0'))


def downgrade() -> None:
    with op.batch_alter_table('sched_jobs', schema=None) as batch_op:
        batch_op.drop_column('log_offset')
        batch_op.drop_column('external_active')
