"""The data service's tables (SQLModel). Only this service reads or writes them."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Column, Index, LargeBinary, UniqueConstraint
from sqlmodel import Field, SQLModel

metadata = SQLModel.metadata


class ProjectRow(SQLModel, table=True):
    __tablename__ = "data_projects"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(unique=True, max_length=63)
    description: str = ""
    quota_bytes: int = Field(default=0, sa_type=BigInteger)
    # Bytes of distinct chunks the project's versions reference (kept in step with project_chunks).
    stored_bytes: int = Field(default=0, sa_type=BigInteger)
    create_time: datetime


class DatasetRow(SQLModel, table=True):
    __tablename__ = "data_datasets"
    __table_args__ = (UniqueConstraint("project_id", "name"),)

    id: int | None = Field(default=None, primary_key=True)
    project_id: int = Field(foreign_key="data_projects.id", index=True)
    name: str = Field(max_length=63)
    description: str = ""
    create_time: datetime
    # Number of the newest existing version (0: none); the compare-and-set target of a commit.
    head_number: int = 0
    # Highest number ever given out: numbers are never reused, even after a deletion.
    last_number: int = 0
    version_count: int = 0


class VersionRow(SQLModel, table=True):
    __tablename__ = "data_versions"
    __table_args__ = (UniqueConstraint("dataset_id", "number"), Index("ix_data_versions_digest", "digest"))

    id: int | None = Field(default=None, primary_key=True)
    dataset_id: int = Field(foreign_key="data_datasets.id", index=True)
    number: int
    digest: str = Field(max_length=64)
    parents: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    author: str = ""
    message: str = ""
    create_time: datetime
    user_metadata: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    total_size: int = Field(default=0, sa_type=BigInteger)
    file_count: int = 0
    # The serialized Manifest's chunks, concatenated 32-byte digests, and their sizes.
    manifest_digests: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    manifest_sizes: list[int] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))


class TagRow(SQLModel, table=True):
    __tablename__ = "data_tags"
    __table_args__ = (UniqueConstraint("dataset_id", "name"),)

    id: int | None = Field(default=None, primary_key=True)
    dataset_id: int = Field(foreign_key="data_datasets.id", index=True)
    name: str = Field(max_length=63)
    version_id: int = Field(foreign_key="data_versions.id", index=True)
    author: str = ""
    update_time: datetime


class TagEventRow(SQLModel, table=True):
    __tablename__ = "data_tag_events"

    id: int | None = Field(default=None, primary_key=True)
    dataset_id: int = Field(foreign_key="data_datasets.id", index=True)
    tag: str = Field(max_length=63)
    previous_number: int = 0
    number: int = 0
    author: str = ""
    event_time: datetime


class ChunkRow(SQLModel, table=True):
    """Where a stored chunk lives: a byte range of a pack object."""

    __tablename__ = "data_chunks"

    digest: bytes = Field(sa_column=Column(LargeBinary(32), primary_key=True))
    pack: str = Field(max_length=80, index=True)
    offset: int = Field(sa_type=BigInteger)
    length: int
    # Seconds since the epoch of the last upload or FindMissingChunks that saw it; GC's grace period.
    touched_at: float


class PackRow(SQLModel, table=True):
    __tablename__ = "data_packs"

    key: str = Field(primary_key=True, max_length=80)
    size: int = Field(sa_type=BigInteger)
    create_time: datetime


class ProjectChunkRow(SQLModel, table=True):
    """A chunk referenced by at least one version in the project: the project's deduplicated usage,
    and (as a union over projects) the set garbage collection must keep."""

    __tablename__ = "data_project_chunks"
    __table_args__ = (Index("ix_data_project_chunks_digest", "digest"),)

    project_id: int = Field(foreign_key="data_projects.id", primary_key=True)
    digest: bytes = Field(sa_column=Column(LargeBinary(32), primary_key=True))
    length: int


class ArtifactRow(SQLModel, table=True):
    """A content-addressed file tree of a project (a run's files, a model's weights)."""

    __tablename__ = "data_artifacts"
    __table_args__ = (UniqueConstraint("project_id", "digest"),)

    id: int | None = Field(default=None, primary_key=True)
    project_id: int = Field(foreign_key="data_projects.id", index=True)
    digest: str = Field(max_length=64)
    total_size: int = Field(default=0, sa_type=BigInteger)
    file_count: int = 0
    create_time: datetime
    manifest_digests: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    manifest_sizes: list[int] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))


class PinRow(SQLModel, table=True):
    """A reference from another service's resource that keeps a version or artifact from deletion."""

    __tablename__ = "data_pins"
    __table_args__ = (UniqueConstraint("target", "owner"),)

    id: int | None = Field(default=None, primary_key=True)
    pin_id: str = Field(max_length=32, unique=True)
    # The pinned resource's canonical name (`.../versions/v3` or `.../artifacts/<digest>`).
    target: str = Field(max_length=400, index=True)
    project_id: int = Field(foreign_key="data_projects.id", index=True)
    owner: str = Field(max_length=400)
    create_time: datetime
