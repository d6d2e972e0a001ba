"""Rows and domain values to protobuf messages."""

from __future__ import annotations

from google.protobuf import json_format, timestamp_pb2

from atelier.registry.v1 import resources_pb2 as pb
from atelier.runtime.timestamps import to_timestamp
from services.registry.models import VersionView
from services.registry.new_versions import CreatedVersion
from services.registry.points import loaded
from services.registry.runs import RunView
from services.registry.tables import AliasEventRow, AliasRow, ExperimentRow, MetricPointRow, ModelRow
from services.registry.usage import Usage, of_run


def experiment(project: str, row: ExperimentRow, run_count: int = 0) -> pb.Experiment:
    return pb.Experiment(
        name=f"projects/{project}/experiments/{row.name}",
        description=row.description,
        create_time=to_timestamp(row.create_time),
        run_count=run_count,
    )


def run(view: RunView) -> pb.Run:
    row = view.row
    message = pb.Run(
        name=view.name,
        display_name=row.display_name,
        state=row.state,  # type: ignore[arg-type]
        state_message=row.state_message,
        start_time=to_timestamp(row.start_time),
        params=row.params,
        tags=row.tags,
        metrics=view.metrics,
        inputs=row.inputs,
        job=row.job,
        parent_run=row.parent_run,
        user=row.user,
        command=row.command,
        heartbeat_time=to_timestamp(row.heartbeat_time),
        artifacts=[pb.RunArtifact(path=a.path, artifact=a.artifact, size_bytes=a.size) for a in view.artifacts],
    )
    if row.end_time is not None:
        message.end_time.CopyFrom(to_timestamp(row.end_time))
    _set_usage(message.usage, of_run(row))
    json_format.ParseDict(row.code, message.code, ignore_unknown_fields=True)
    json_format.ParseDict(row.environment, message.environment, ignore_unknown_fields=True)
    return message


def metric_point(row: MetricPointRow) -> pb.MetricPoint:
    moment = timestamp_pb2.Timestamp()
    moment.FromNanoseconds(int(row.time * 1e9))
    return pb.MetricPoint(key=row.key, step=row.step, value=loaded(row.value), time=moment)


def registered_model(row: ModelRow, aliases: dict[str, int]) -> pb.RegisteredModel:
    base = f"projects/{row.project}/models/{row.name}"
    return pb.RegisteredModel(
        name=base,
        description=row.description,
        create_time=to_timestamp(row.create_time),
        version_count=row.last_number,
        aliases={alias: f"{base}/versions/v{number}" for alias, number in aliases.items()},
    )


def model_version(view: VersionView) -> pb.ModelVersion:
    row = view.row
    message = pb.ModelVersion(
        name=view.name,
        number=row.number,
        description=row.description,
        artifact=row.artifact,
        artifact_digest=row.artifact_digest,
        format=row.format,  # type: ignore[arg-type]
        module_class=row.module_class,
        metrics=row.metrics,
        tags=row.tags,
        aliases=view.aliases,
        author=row.author,
        create_time=to_timestamp(row.create_time),
    )
    _set_usage(message.usage, view.usage)
    json_format.ParseDict(row.signature, message.signature, ignore_unknown_fields=True)
    json_format.ParseDict(row.lineage, message.lineage, ignore_unknown_fields=True)
    return message


def created_version(created: CreatedVersion) -> pb.ModelVersion:
    """The message of a version just registered, from the values it was written with."""
    registration = created.registration
    row = registration.row
    message = pb.ModelVersion(
        name=registration.name,
        number=registration.number,
        description=row["description"],
        artifact=row["artifact"],
        artifact_digest=row["artifact_digest"],
        format=row["format"],
        module_class=row["module_class"],
        metrics=row["metrics"],
        tags=row["tags"],
        author=row["author"],
        create_time=to_timestamp(row["create_time"]),
    )
    # Empty ones stay unset, as when read back from their JSON.
    if created.signature.ListFields():
        message.signature.CopyFrom(created.signature)
    if created.lineage.ListFields():
        message.lineage.CopyFrom(created.lineage)
    _set_usage(message.usage, created.usage)
    return message


def _set_usage(target: pb.ResourceUsage, usage: Usage | None) -> None:
    """Fill a message's `usage` when some was recorded (else it stays unset)."""
    if usage is not None:
        target.gpu_seconds = usage.gpu_seconds
        target.energy_joules = usage.energy_joules
        target.simulated = usage.simulated
        target.update_time.CopyFrom(to_timestamp(usage.time))


def alias(project: str, model: str, row: AliasRow, number: int) -> pb.Alias:
    base = f"projects/{project}/models/{model}"
    return pb.Alias(
        name=f"{base}/aliases/{row.name}",
        version=f"{base}/versions/v{number}",
        author=row.author,
        update_time=to_timestamp(row.update_time),
    )


def alias_event(model: str, row: AliasEventRow) -> pb.AliasEvent:
    def version(number: int) -> str:
        return f"{model}/versions/v{number}" if number else ""

    return pb.AliasEvent(
        alias=f"{model}/aliases/{row.alias}",
        previous_version=version(row.previous_number),
        version=version(row.number),
        author=row.author,
        gate=row.gate,
        event_time=to_timestamp(row.event_time),
    )
