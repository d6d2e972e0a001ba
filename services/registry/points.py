"""Metric points of a LogRunData call, row-wise or column-wise, as rows plus each key's latest."""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence

from google.protobuf.timestamp_pb2 import Timestamp

from atelier.errors import InvalidArgument
from atelier.registry.v1 import registry_service_pb2 as rpc
from atelier.registry.v1 import resources_pb2 as pb


def decode_points(
    points: Sequence[pb.MetricPoint], columns: rpc.MetricColumns | None
) -> tuple[list[dict[str, object]], dict[str, dict[str, object]]]:
    """Rows to insert, and per metric key the point with the largest (step, time)."""
    stamp = time.time()
    tuples = [(p.key, p.step, p.value, _seconds(p.time) if p.HasField("time") else stamp) for p in points]
    if columns is not None and columns.values:
        tuples += _columns(columns, stamp)
    rows: list[dict[str, object]] = []
    latest: dict[str, tuple[str, int, float, float]] = {}
    for point in tuples:
        key = point[0]
        check_key("metric", key)
        if not 0 <= point[3] <= _LAST_SECOND:
            raise InvalidArgument(
                f"metric {key!r} has time {point[3]:g}: times are seconds since 1970 up to the year 9999",
                metadata={"field": "time", "value": key},
            )
        value = point[2]
        rows.append({"key": key, "step": point[1], "value": value if value == value else None, "time": point[3]})
        best = latest.get(key)
        if best is None or (point[1], point[3]) >= (best[1], best[3]):
            latest[key] = point
    last = {k: {"key": k, "step": p[1], "value": stored(p[2]), "time": p[3]} for k, p in latest.items()}
    return rows, last  # type: ignore[return-value]


def stored(value: float) -> float | None:
    """A run's metric value as its column holds it: NaN as NULL (SQLite cannot hold NaN, and NULL stays out
    of comparisons and orderings on both databases); infinities as they are."""
    return None if value != value else value


def loaded(value: float | None) -> float:
    """A run's metric value read back: NULL is NaN."""
    return math.nan if value is None else value


# 9999-12-31T23:59:59Z, the last second a timestamp can show.
_LAST_SECOND = 253_402_300_799


def _seconds(moment: Timestamp) -> float:
    """A point's time in seconds (one outside the years 1970-9999 is left for the check to name)."""
    return moment.seconds + moment.nanos / 1e9


MAX_KEY = 250
"""The longest metric, param or tag key (the key columns' width, and MLflow's limit)."""


def check_key(kind: str, key: str, field: str = "key") -> None:
    """A metric's, param's or tag's key: 1-250 characters."""
    if not key or len(key) > MAX_KEY:
        raise InvalidArgument(f"{kind} key {key[:MAX_KEY]!r} must be 1-{MAX_KEY} characters", metadata={"field": field})


def check_entries(kind: str, entries: Mapping[str, str], field: str) -> None:
    """A map of params or tags (`field` names it): `check_key` for each key, and no NUL character in
    a key or a value (text columns cannot hold one on PostgreSQL)."""
    for key, value in entries.items():
        check_key(kind, key, field)
        if "\x00" in key or "\x00" in value:
            raise InvalidArgument(
                f"{kind} {key[:MAX_KEY]!r} holds a NUL character (0x00); keys and values are text without one",
                metadata={"field": field},
            )


def check_metric(key: str, value: float) -> None:
    """A model version's metric: its key (1-250 characters) and value (a finite number: a version's
    metrics say how good it is, and NaN and infinities say nothing of that). A run's points may be NaN or
    infinite (`decode_points`)."""
    check_key("metric", key)
    if not math.isfinite(value):
        raise InvalidArgument(
            f"metric {key!r} is {value}: metric values are finite numbers", metadata={"field": "value", "value": key}
        )


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
