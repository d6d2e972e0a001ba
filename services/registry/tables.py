"""The registry's tables (SQLModel). Only the registry reads or writes them.

Parameters, tags, final metrics and lineage datasets are kept both on their owner (as JSON, for
reading) and as indexed key/value rows (for filtering and ordering in one SQL query).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Column, Index, UniqueConstraint
from sqlmodel import Field, SQLModel

metadata = SQLModel.metadata


def _json(default: Any = None) -> Any:
    return Field(default_factory=(dict if default is None else default), sa_column=Column(JSON, nullable=False))


class ExperimentRow(SQLModel, table=True):
    __tablename__ = "reg_experiments"
    __table_args__ = (UniqueConstraint("project", "name"),)

    id: int | None = Field(default=None, primary_key=True)
    project: str = Field(max_length=63, index=True)
    name: str = Field(max_length=63)
    description: str = ""
    create_time: datetime


class RunRow(SQLModel, table=True):
    __tablename__ = "reg_runs"

    id: int | None = Field(default=None, primary_key=True)
    run_id: str = Field(max_length=32, unique=True)
    experiment_id: int = Field(foreign_key="reg_experiments.id", index=True)
    display_name: str = ""
    state: int = Field(index=True)
    state_message: str = ""
    start_time: datetime = Field(index=True)
    end_time: datetime | None = None
    heartbeat_time: datetime
    user: str = ""
    # Indexed: the monitor records a job's GPU use on the runs that name it.
    job: str = Field(default="", index=True)
    parent_run: str = ""
    code: dict[str, Any] = _json()
    environment: dict[str, Any] = _json()
    inputs: list[str] = _json(list)
    command: list[str] = _json(list)
    params: dict[str, str] = _json()
    tags: dict[str, str] = _json()
    # The job's GPU time and energy as the monitor last recorded them; usage_time is None until then.
    usage_gpu_seconds: float = 0.0
    usage_energy_joules: float = 0.0
    usage_simulated: bool = False
    usage_time: datetime | None = None


class RunParamRow(SQLModel, table=True):
    __tablename__ = "reg_run_params"
    __table_args__ = (
        Index("ix_reg_run_params_key_num", "key", "value_num"),
        Index("ix_reg_run_params_key_value", "key", "value"),
    )

    run_id: int = Field(foreign_key="reg_runs.id", primary_key=True)
    key: str = Field(primary_key=True, max_length=250)
    value: str
    value_num: float | None = None


class RunTagRow(SQLModel, table=True):
    __tablename__ = "reg_run_tags"
    __table_args__ = (Index("ix_reg_run_tags_key_value", "key", "value"),)

    run_id: int = Field(foreign_key="reg_runs.id", primary_key=True)
    key: str = Field(primary_key=True, max_length=250)
    value: str


class RunInputRow(SQLModel, table=True):
    __tablename__ = "reg_run_inputs"

    run_id: int = Field(foreign_key="reg_runs.id", primary_key=True)
    dataset: str = Field(primary_key=True, max_length=400, index=True)


class MetricPointRow(SQLModel, table=True):
    __tablename__ = "reg_metric_points"
    __table_args__ = (Index("ix_reg_metric_points_run_key_step", "run_id", "key", "step"),)

    id: int | None = Field(default=None, primary_key=True)
    run_id: int = Field(foreign_key="reg_runs.id")
    key: str = Field(max_length=250)
    step: int = Field(sa_type=BigInteger)
    value: float | None  # None: NaN (`points.stored` and `points.loaded`)
    time: float


class RunMetricRow(SQLModel, table=True):
    """The last logged value of each metric of a run (largest step, then latest time).

    The value indexes end with the run id, the tie-break of an ordering by a metric, so "best
    runs by a metric" reads them in order and stops at the page size, whatever the planner's
    statistics say."""

    __tablename__ = "reg_run_metrics"
    __table_args__ = (
        Index("ix_reg_run_metrics_key_value", "key", "value", "run_id"),
        Index("ix_reg_run_metrics_experiment_key_value", "experiment_id", "key", "value", "run_id"),
    )

    run_id: int = Field(foreign_key="reg_runs.id", primary_key=True)
    key: str = Field(primary_key=True, max_length=250)
    # Copied from the run so "best run of an experiment by a metric" walks one index.
    experiment_id: int
    value: float | None  # None: NaN
    step: int = Field(sa_type=BigInteger)
    time: float


class RunArtifactRow(SQLModel, table=True):
    __tablename__ = "reg_run_artifacts"

    run_id: int = Field(foreign_key="reg_runs.id", primary_key=True)
    path: str = Field(primary_key=True, max_length=1000)
    artifact: str = Field(max_length=400)
    size: int = Field(sa_type=BigInteger)


class ModelRow(SQLModel, table=True):
    __tablename__ = "reg_models"
    __table_args__ = (UniqueConstraint("project", "name"),)

    id: int | None = Field(default=None, primary_key=True)
    project: str = Field(max_length=63, index=True)
    name: str = Field(max_length=63)
    description: str = ""
    create_time: datetime
    last_number: int = 0


class ModelVersionRow(SQLModel, table=True):
    __tablename__ = "reg_model_versions"
    __table_args__ = (UniqueConstraint("model_id", "number"),)

    id: int | None = Field(default=None, primary_key=True)
    model_id: int = Field(foreign_key="reg_models.id", index=True)
    number: int
    description: str = ""
    artifact: str = Field(max_length=400)
    artifact_digest: str = ""
    format: int
    module_class: str = ""
    signature: dict[str, Any] = _json()
    lineage: dict[str, Any] = _json()
    metrics: dict[str, float] = _json()
    tags: dict[str, str] = _json()
    author: str = ""
    create_time: datetime = Field(index=True)
    run: str = Field(default="", max_length=400, index=True)
    # Experiment of the run that produced it (`projects/p/experiments/e`), for filtering.
    experiment: str = Field(default="", max_length=200, index=True)
    parent_version: str = Field(default="", max_length=400, index=True)
    pins: list[str] = _json(list)


class VersionMetricRow(SQLModel, table=True):
    __tablename__ = "reg_version_metrics"
    __table_args__ = (
        Index("ix_reg_version_metrics_key_value", "key", "value", "version_id"),
        Index("ix_reg_version_metrics_model_key_value", "model_id", "key", "value", "version_id"),
    )

    version_id: int = Field(foreign_key="reg_model_versions.id", primary_key=True)
    key: str = Field(primary_key=True, max_length=250)
    # Copied from the version so "best version of a model by a metric" walks one index.
    model_id: int
    value: float


class VersionParamRow(SQLModel, table=True):
    __tablename__ = "reg_version_params"
    __table_args__ = (
        Index("ix_reg_version_params_key_num", "key", "value_num"),
        Index("ix_reg_version_params_key_value", "key", "value"),
    )

    version_id: int = Field(foreign_key="reg_model_versions.id", primary_key=True)
    key: str = Field(primary_key=True, max_length=250)
    value: str
    value_num: float | None = None


class VersionTagRow(SQLModel, table=True):
    __tablename__ = "reg_version_tags"
    __table_args__ = (Index("ix_reg_version_tags_key_value", "key", "value"),)

    version_id: int = Field(foreign_key="reg_model_versions.id", primary_key=True)
    key: str = Field(primary_key=True, max_length=250)
    value: str


class VersionDatasetRow(SQLModel, table=True):
    __tablename__ = "reg_version_datasets"

    version_id: int = Field(foreign_key="reg_model_versions.id", primary_key=True)
    dataset: str = Field(primary_key=True, max_length=400, index=True)


class AliasRow(SQLModel, table=True):
    __tablename__ = "reg_aliases"
    __table_args__ = (UniqueConstraint("model_id", "name"),)

    id: int | None = Field(default=None, primary_key=True)
    model_id: int = Field(foreign_key="reg_models.id", index=True)
    name: str = Field(max_length=63)
    version_id: int = Field(foreign_key="reg_model_versions.id", index=True)
    author: str = ""
    update_time: datetime


class AliasEventRow(SQLModel, table=True):
    __tablename__ = "reg_alias_events"

    id: int | None = Field(default=None, primary_key=True)
    model_id: int = Field(foreign_key="reg_models.id", index=True)
    alias: str = Field(max_length=63)
    previous_number: int = 0
    number: int = 0
    author: str = ""
    gate: str = ""
    event_time: datetime
