"""Metric points of a LogRunData call, row-wise or column-wise, as rows plus each key's latest."""

from __future__ import annotations

import time
from collections.abc import Sequence

from atelier.errors import InvalidArgument
from atelier.registry.v1 import registry_service_pb2 as rpc
from atelier.registry.v1 import resources_pb2 as pb


def decode_points(
    points: Sequence[pb.MetricPoint], columns: rpc.MetricColumns | None
) -> tuple[list[dict[str, object]], dict[str, dict[str, object]]]:
    """Rows to insert, and per metric key the point with the largest (step, time)."""
    stamp = time.time()
    tuples = [(p.key, p.step, p.value, p.time.ToNanoseconds() / 1e9 if p.HasField("time") else stamp) for p in points]
    if columns is not None and columns.values:
        tuples += _columns(columns, stamp)
    rows: list[dict[str, object]] = []
    latest: dict[str, tuple[str, int, float, float]] = {}
    for point in tuples:
        key = point[0]
        if not key or len(key) > 250:
            raise InvalidArgument(f"metric key {key!r} must be 1-250 characters", metadata={"field": "key"})
        rows.append({"key": key, "step": point[1], "value": point[2], "time": point[3]})
        best = latest.get(key)
        if best is None or (point[1], point[3]) >= (best[1], best[3]):
            latest[key] = point
    last = {k: {"key": k, "step": p[1], "value": p[2], "time": p[3]} for k, p in latest.items()}
    return rows, last  # type: ignore[return-value]


def _columns(columns: rpc.MetricColumns, stamp: float) -> list[tuple[str, int, float, float]]:
    """Points of a column-wise batch, checking that the columns line up."""
    count = len(columns.values)
    if not (len(columns.key_index) == len(columns.steps) == count) or len(columns.times) not in (0, count):
        raise InvalidArgument(
            "metric columns differ in length: key_index, steps and values need one entry per point "
            f"({len(columns.key_index)}, {len(columns.steps)}, {count}), times one or none",
            metadata={"field": "columns"},
        )
    keys = list(columns.keys)
    if any(i < 0 or i >= len(keys) for i in columns.key_index):
        raise InvalidArgument(
            f"metric columns key_index out of range 0..{len(keys) - 1}", metadata={"field": "columns"}
        )
    times = list(columns.times) or [stamp] * count
    return [
        (keys[i], step, value, moment)
        for i, step, value, moment in zip(columns.key_index, columns.steps, columns.values, times, strict=True)
    ]
