"""Rows to protobuf messages."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from google.protobuf import json_format, timestamp_pb2

from atelier.scheduler.v1 import resources_pb2 as pb
from services.scheduler.jobs import JobView
from services.scheduler.tables import LogRow, NodeRow


def timestamp(value: datetime) -> timestamp_pb2.Timestamp:
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(value if value.tzinfo else value.replace(tzinfo=UTC))
    return stamp


def job(view: JobView) -> pb.Job:
    row = view.row
    message = view.spec()
    message.name = view.name
    message.state = row.state  # type: ignore[assignment]
    message.reason = row.reason
    message.create_time.CopyFrom(timestamp(row.create_time))
    if row.start_time is not None:
        message.start_time.CopyFrom(timestamp(row.start_time))
    if row.end_time is not None:
        message.end_time.CopyFrom(timestamp(row.end_time))
    message.restart_count = row.restart_count
    message.external_id = row.external_id
    for attempt in view.attempts:
        entry = message.attempts.add(number=attempt.number, outcome=attempt.outcome, reason=attempt.reason)  # type: ignore[arg-type]
        json_format.ParseDict(attempt.placement, entry.placement)
        entry.start_time.CopyFrom(timestamp(attempt.start_time))
        if attempt.end_time is not None:
            entry.end_time.CopyFrom(timestamp(attempt.end_time))
    if view.attempts:
        message.placement.CopyFrom(message.attempts[-1].placement)
    return message


def node(row: NodeRow, holders: dict[int, str], precisions: Callable[[str], list[int]]) -> pb.Node:
    message = pb.Node(
        name=f"nodes/{row.name}",
        address=row.address,
        cpus=row.cpus,
        memory_bytes=row.memory_bytes,
        labels=row.labels,
        state=row.state,  # type: ignore[arg-type]
        discovery=row.discovery,
        driver_version=row.driver_version,
        register_time=timestamp(row.register_time),
        heartbeat_time=timestamp(row.heartbeat_time),
    )
    for data in row.cards:
        card = json_format.ParseDict(data, message.cards.add(), ignore_unknown_fields=True)
        card.job = holders.get(card.index, "")
        card.ClearField("precisions")
        card.precisions.extend(precisions(card.compute_capability))  # type: ignore[arg-type]
    for data in row.links:
        json_format.ParseDict(data, message.links.add(), ignore_unknown_fields=True)
    return message


def log_line(row: LogRow) -> pb.LogLine:
    return pb.LogLine(
        attempt=row.attempt,
        rank=row.rank,
        stream=row.stream,  # type: ignore[arg-type]
        time=timestamp(row.time),
        text=row.text,
        offset=row.id or 0,
    )
