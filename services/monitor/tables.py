"""The monitor's tables (SQLModel). Only the monitor reads or writes them.

Usage is kept per job, card and hour: an agent's reports add to the row of the hour they fall in, so a
query over any range of whole hours sums rows without scanning samples; each row notes when it last
changed, so the jobs to publish to the registry are found by index. Report ids are remembered
for a while so that a report an agent retries is counted once. Drift samples are kept as the blocks
they came in (numbers as float64 bytes), only those a window still holds.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Index, UniqueConstraint
from sqlmodel import Field, SQLModel

metadata = SQLModel.metadata


class UsageRow(SQLModel, table=True):
    __tablename__ = "mon_usage"
    __table_args__ = (
        UniqueConstraint("job", "card_uuid", "hour"),
        Index("ix_mon_usage_project_hour", "project", "hour"),
    )

    id: int | None = Field(default=None, primary_key=True)
    project: str = Field(max_length=63)
    job: str = Field(max_length=200)
    user: str = Field(default="", max_length=200)
    node: str = Field(default="", max_length=200)
    card_uuid: str = Field(max_length=100)
    hour: datetime
    """Start of the hour the usage fell in (UTC)."""
    gpu_seconds: float = 0.0
    energy_joules: float = 0.0
    first_time: datetime
    last_time: datetime
    simulated: bool = False
    update_time: datetime = Field(index=True)
    """When a report last added to the row: the registry is sent the jobs changed since its last round."""


class ReportRow(SQLModel, table=True):
    __tablename__ = "mon_reports"

    node: str = Field(max_length=200, primary_key=True)
    report_id: str = Field(max_length=100, primary_key=True)
    receive_time: datetime = Field(index=True)


class DriftBlockRow(SQLModel, table=True):
    """A block of drift samples as a WriteDriftSamples call carried it, so windows outlive a restart."""

    __tablename__ = "mon_drift_blocks"
    __table_args__ = (Index("ix_mon_drift_blocks_window", "deployment", "model_version", "id"),)

    id: int | None = Field(default=None, primary_key=True)
    deployment: str = Field(max_length=200)
    model_version: str = Field(max_length=300)
    feature_names: str
    """JSON list of the block's feature names."""
    receive_time: datetime = Field(index=True)
    rows: int
    features: bytes
    """float64, row-major: `rows * len(feature_names)` values."""
    predictions: bytes
    """float64: `rows` values."""
