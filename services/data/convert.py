"""Rows and domain values to protobuf messages."""

from __future__ import annotations

from google.protobuf import json_format, struct_pb2

from atelier.data.v1 import resources_pb2 as pb
from atelier.names import dataset_name, version_name
from atelier.runtime.timestamps import to_timestamp
from services.data.artifacts import ResolvedArtifact
from services.data.catalog import ResolvedVersion
from services.data.maintenance import Usage
from services.data.pins import CreatedPin
from services.data.store import DatasetRecord, ProjectRecord
from services.data.tables import DatasetRow, PinRow, ProjectRow, TagEventRow, TagRow


def project(row: ProjectRow | ProjectRecord) -> pb.Project:
    return pb.Project(
        name=f"projects/{row.name}",
        description=row.description,
        quota_bytes=row.quota_bytes,
        create_time=to_timestamp(row.create_time),
    )


def dataset(project_id: str, row: DatasetRow | DatasetRecord) -> pb.Dataset:
    return pb.Dataset(
        name=dataset_name(project_id, row.name),
        description=row.description,
        create_time=to_timestamp(row.create_time),
        version_count=row.version_count,
        latest_version=version_name(project_id, row.name, f"v{row.head_number}") if row.head_number else "",
    )


def version(resolved: ResolvedVersion) -> pb.DatasetVersion:
    row = resolved.row
    message = pb.DatasetVersion(
        name=resolved.name,
        number=row.number,
        digest=row.digest,
        parents=row.parents,
        author=row.author,
        message=row.message,
        create_time=to_timestamp(row.create_time),
        total_size_bytes=row.total_size,
        file_count=row.file_count,
        tags=resolved.tags,
    )
    if row.user_metadata:
        metadata = struct_pb2.Struct()
        json_format.ParseDict(row.user_metadata, metadata)
        message.metadata.CopyFrom(metadata)
    return message


def tag(project_id: str, dataset_row: DatasetRow | DatasetRecord, row: TagRow, number: int) -> pb.Tag:
    base = dataset_name(project_id, dataset_row.name)
    return pb.Tag(
        name=f"{base}/tags/{row.name}",
        version=version_name(project_id, dataset_row.name, f"v{number}"),
        author=row.author,
        update_time=to_timestamp(row.update_time),
    )


def tag_event(project_id: str, dataset_id: str, row: TagEventRow) -> pb.TagEvent:
    def name(number: int) -> str:
        return version_name(project_id, dataset_id, f"v{number}") if number else ""

    return pb.TagEvent(
        tag=f"{dataset_name(project_id, dataset_id)}/tags/{row.tag}",
        previous_version=name(row.previous_number),
        version=name(row.number),
        author=row.author,
        event_time=to_timestamp(row.event_time),
    )


def usage(value: Usage) -> pb.StorageUsage:
    return pb.StorageUsage(
        resource=value.resource,
        logical_bytes=value.logical_bytes,
        deduplicated_bytes=value.deduplicated_bytes,
        version_count=value.version_count,
        quota_bytes=value.quota_bytes,
    )


def artifact(resolved: ResolvedArtifact) -> pb.Artifact:
    row = resolved.row
    return pb.Artifact(
        name=resolved.name,
        digest=row.digest,
        total_size_bytes=row.total_size,
        file_count=row.file_count,
        create_time=to_timestamp(row.create_time),
    )


def pin(row: PinRow | CreatedPin, target: str) -> pb.Pin:
    return pb.Pin(name=f"{target}/pins/{row.pin_id}", owner=row.owner, create_time=to_timestamp(row.create_time))
