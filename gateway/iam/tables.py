"""The IAM tables (SQLModel). Only the IAM service reads or writes them."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Index
from sqlmodel import Field, SQLModel

metadata = SQLModel.metadata


class PrincipalRow(SQLModel, table=True):
    __tablename__ = "iam_principals"

    id: str = Field(primary_key=True, max_length=63)
    kind: int
    """PrincipalKind: users and service accounts share the id namespace."""
    display_name: str = Field(default="", max_length=200)
    cluster_roles: str = Field(default="", max_length=200)
    """ClusterRole numbers, comma-separated."""
    disabled: bool = False
    create_time: datetime


class TokenRow(SQLModel, table=True):
    __tablename__ = "iam_tokens"
    __table_args__ = (Index("ix_iam_tokens_principal", "principal_id", "create_time"),)

    id: str = Field(primary_key=True, max_length=32)
    principal_id: str = Field(foreign_key="iam_principals.id", max_length=63)
    secret_hash: bytes
    """Keyed BLAKE3 of the secret; the secret itself is never stored."""
    display_name: str = Field(default="", max_length=200)
    create_time: datetime
    expire_time: datetime | None = None
    last_use_time: datetime | None = None
    revoke_time: datetime | None = None
    scope_project: str = Field(default="", max_length=63)
    scope_role: int = 0


class MemberRow(SQLModel, table=True):
    __tablename__ = "iam_members"
    __table_args__ = (Index("ix_iam_members_principal", "principal_id"),)

    project: str = Field(primary_key=True, max_length=63)
    principal_id: str = Field(primary_key=True, foreign_key="iam_principals.id", max_length=63)
    role: int
    update_time: datetime


class AuditRow(SQLModel, table=True):
    __tablename__ = "iam_audit"
    __table_args__ = (
        Index("ix_iam_audit_project_time", "project", "time"),
        Index("ix_iam_audit_principal_time", "principal", "time"),
    )

    id: int | None = Field(default=None, primary_key=True)
    time: datetime = Field(index=True)
    principal: str = Field(max_length=200)
    method: str = Field(max_length=200)
    project: str = Field(default="", max_length=63)
    resource: str = Field(default="", max_length=400)
    peer: str = Field(default="", max_length=200)
    code: str = Field(max_length=40)
    service: str = Field(default="", max_length=40)
