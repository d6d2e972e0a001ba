"""identities, tokens, members, audit log

Revision ID: 0001
Revises:
Create Date: 2026-12-06 11:00:00
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
        "iam_principals",
        sa.Column("id", sa.String(length=63), nullable=False),
        sa.Column("kind", sa.Integer(), nullable=False),
        sa.Column("display_name", sa.String(length=200), nullable=False),
        sa.Column("cluster_roles", sa.String(length=200), nullable=False),
        sa.Column("disabled", sa.Boolean(), nullable=False),
        sa.Column("create_time", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "iam_tokens",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("principal_id", sa.String(length=63), nullable=False),
        sa.Column("secret_hash", sa.LargeBinary(), nullable=False),
        sa.Column("display_name", sa.String(length=200), nullable=False),
        sa.Column("create_time", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column("expire_time", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
        sa.Column("last_use_time", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
        sa.Column("revoke_time", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
        sa.Column("scope_project", sa.String(length=63), nullable=False),
        sa.Column("scope_role", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["principal_id"], ["iam_principals.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_iam_tokens_principal", "iam_tokens", ["principal_id", "create_time"])
    op.create_table(
        "iam_members",
        sa.Column("project", sa.String(length=63), nullable=False),
        sa.Column("principal_id", sa.String(length=63), nullable=False),
        sa.Column("role", sa.Integer(), nullable=False),
        sa.Column("update_time", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["principal_id"], ["iam_principals.id"]),
        sa.PrimaryKeyConstraint("project", "principal_id"),
    )
    op.create_index("ix_iam_members_principal", "iam_members", ["principal_id"])
    op.create_table(
        "iam_audit",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("time", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column("principal", sa.String(length=200), nullable=False),
        sa.Column("method", sa.String(length=200), nullable=False),
        sa.Column("project", sa.String(length=63), nullable=False),
        sa.Column("resource", sa.String(length=400), nullable=False),
        sa.Column("peer", sa.String(length=200), nullable=False),
        sa.Column("code", sa.String(length=40), nullable=False),
        sa.Column("service", sa.String(length=40), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(op.f("ix_iam_audit_time"), "iam_audit", ["time"])
    op.create_index("ix_iam_audit_project_time", "iam_audit", ["project", "time"])
    op.create_index("ix_iam_audit_principal_time", "iam_audit", ["principal", "time"])


def downgrade() -> None:
    op.drop_table("iam_audit")
    op.drop_table("iam_members")
    op.drop_table("iam_tokens")
    op.drop_table("iam_principals")
