"""The inference service's tables (SQLModel): deployments survive a restart and are loaded again."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Column, UniqueConstraint
from sqlmodel import Field, SQLModel

metadata = SQLModel.metadata


class DeploymentRow(SQLModel, table=True):
    __tablename__ = "inf_deployments"
    __table_args__ = (UniqueConstraint("deployment_id", name="uq_inf_deployments_id"),)

    id: int | None = Field(default=None, primary_key=True)
    project: str = Field(max_length=63, index=True)
    # Unique across projects: it is the model name KServe v2 clients call.
    deployment_id: str = Field(max_length=63)
    model_ref: str
    """The reference as given (`digits@production`), kept to follow aliases."""
    model_version: str
    """The version it resolved to, `projects/{p}/models/{m}/versions/v{N}`."""
    spec: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    """Device, instances, batching, queue and sequence settings (`DeploymentSpec.to_json`)."""
    state: int
    state_reason: str = ""
    description: str = ""
    create_time: datetime
    update_time: datetime
