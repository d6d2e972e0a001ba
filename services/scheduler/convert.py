"""Rows to protobuf messages."""

from __future__ import annotations

from collections.abc import Callable

from google.protobuf import json_format

from atelier.runtime.timestamps import to_timestamp
from atelier.scheduler.v1 import resources_pb2 as pb
from services.scheduler.jobs import JobView
from services.scheduler.nodes import NodeUse
from services.scheduler.tables import LogRow, NodeRow


def job(view: JobView) -> pb.Job:
    row = view.row
    message = view.spec()
    message.name = view.name
    message.state = row.state  # type: ignore[assignment]
    message.reason = row.reason
    message.create_time.CopyFrom(to_timestamp(row.create_time))
    if row.start_time is not None:
        message.start_time.CopyFrom(to_timestamp(row.start_time))
    if row.end_time is not None:
        message.end_time.CopyFrom(to_timestamp(row.end_time))
    message.restart_count = row.restart_count
    message.external_id = row.external_id
    for attempt in view.attempts:
        entry = message.attempts.add(number=attempt.number, outcome=attempt.outcome, reason=attempt.reason)  # type: ignore[arg-type]
        json_format.ParseDict(attempt.placement, entry.placement)
        entry.start_time.CopyFrom(to_timestamp(attempt.start_time))
        if attempt.end_time is not None:
            entry.end_time.CopyFrom(to_timestamp(attempt.end_time))
    if view.attempts:
        message.placement.CopyFrom(message.attempts[-1].placement)
    return message


def node(row: NodeRow, use: NodeUse, precisions: Callable[[str], list[int]]) -> pb.Node:
    """The node as last reported, with what its running jobs hold taken off its free CPUs and memory."""
    message = pb.Node(
        name=f"nodes/{row.name}",
        address=row.address,
        cpus=row.cpus,
        memory_bytes=row.memory_bytes,
        labels=row.labels,
        state=row.state,  # type: ignore[arg-type]
        discovery=row.discovery,
        driver_version=row.driver_version,
        register_time=to_timestamp(row.register_time),
        heartbeat_time=to_timestamp(row.heartbeat_time),
        free_cpus=max(row.cpus - use.cpus, 0),
        free_memory_bytes=max(row.memory_bytes - use.memory_bytes, 0),
    )
    for data in row.cards:
        card = json_format.ParseDict(data, message.cards.add(), ignore_unknown_fields=True)
        card.job = use.holders.get(card.index, "")
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
        time=to_timestamp(row.time),
        text=row.text,
        offset=row.id or 0,
    )
