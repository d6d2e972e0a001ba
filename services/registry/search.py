"""Filters and orderings of runs and model versions, compiled to one SQL query each.

`metrics.*`, `params.*` and `tags.*` become EXISTS over indexed key/value rows; ordering by a metric
joins its rows, so "best version by a metric" walks one index and stops at the page size.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.sql.elements import ColumnElement
from sqlmodel import col

from atelier.errors import InvalidArgument
from atelier.registry.v1 import resources_pb2 as pb
from services.registry.filters import And, Comparison, Expr, Field, Literal, Not, Or, parse_filter
from services.registry.points import MAX_KEY
from services.registry.tables import (
    ModelRow,
    ModelVersionRow,
    RunInputRow,
    RunMetricRow,
    RunParamRow,
    RunRow,
    RunTagRow,
    VersionDatasetRow,
    VersionMetricRow,
    VersionParamRow,
    VersionTagRow,
)

_OPS: dict[str, Callable[[Any, Any], ColumnElement[bool]]] = {
    "=": lambda a, b: a == b,
    ":": lambda a, b: a == b,
    "!=": lambda a, b: a != b,
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
}


@dataclass(frozen=True)
class Target:
    """What a filter runs over: its id column, its key/value tables and its plain fields."""

    kind: str
    owner: Any
    metrics: Any
    params: Any
    tags: Any
    datasets: Any
    dataset_column: Any
    columns: dict[str, Any]
    times: frozenset[str]


RUNS = Target(
    kind="runs",
    owner=RunRow.id,
    metrics=RunMetricRow,
    params=RunParamRow,
    tags=RunTagRow,
    datasets=RunInputRow,
    dataset_column=RunInputRow.dataset,
    columns={
        "state": RunRow.state,
        "user": RunRow.user,
        "job": RunRow.job,
        "display_name": RunRow.display_name,
        "parent_run": RunRow.parent_run,
        "start_time": RunRow.start_time,
        "end_time": RunRow.end_time,
    },
    times=frozenset({"start_time", "end_time"}),
)
VERSIONS = Target(
    kind="model versions",
    owner=ModelVersionRow.id,
    metrics=VersionMetricRow,
    params=VersionParamRow,
    tags=VersionTagRow,
    datasets=VersionDatasetRow,
    dataset_column=VersionDatasetRow.dataset,
    columns={
        "run": ModelVersionRow.run,
        "experiment": ModelVersionRow.experiment,
        "author": ModelVersionRow.author,
        "number": ModelVersionRow.number,
        "create_time": ModelVersionRow.create_time,
        "parent_model_version": ModelVersionRow.parent_version,
        # A correlated lookup rather than a join, so a query needs reg_models only when it asks.
        "model": sa.select(col(ModelRow.name)).where(col(ModelRow.id) == ModelVersionRow.model_id).scalar_subquery(),
    },
    times=frozenset({"create_time"}),
)


def _owner_key(table: Any) -> Any:
    return table.run_id if hasattr(table, "run_id") else table.version_id


def compile_filter(text: str, target: Target, resolve_dataset: Callable[[str], str]) -> ColumnElement[bool] | None:
    """The SQL condition for a filter (None for an empty one)."""
    expr = parse_filter(text)
    return None if expr is None else _compile(expr, target, resolve_dataset)


def _compile(expr: Expr, target: Target, resolve: Callable[[str], str]) -> ColumnElement[bool]:
    if isinstance(expr, And):
        return sa.and_(*(_compile(e, target, resolve) for e in expr.items))
    if isinstance(expr, Or):
        return sa.or_(*(_compile(e, target, resolve) for e in expr.items))
    if isinstance(expr, Not):
        return sa.not_(_compile(expr.item, target, resolve))
    return _comparison(expr, target, resolve)


def _bad(comparison: Comparison, why: str) -> InvalidArgument:
    return InvalidArgument(
        f"invalid filter at position {comparison.position} ({comparison}): {why}",
        metadata={"field": "filter", "position": str(comparison.position)},
    )


def _comparison(c: Comparison, target: Target, resolve: Callable[[str], str]) -> ColumnElement[bool]:
    if isinstance(c.value, Field):
        raise _bad(c, "a field can be compared with another field only in a promotion gate")
    head, *rest = c.field.path
    if head in ("metrics", "params", "tags") and len(rest) == 1:
        return _key_value(c, target, head, rest[0])
    if head == "dataset" and not rest:
        return _dataset(c, target, resolve)
    if head in target.columns and not rest:
        return _column(c, target, head)
    allowed = ", ".join(["metrics.<name>", "params.<name>", "tags.<name>", "dataset", *sorted(target.columns)])
    raise _bad(c, f"unknown field {c.field} for {target.kind}; fields are {allowed}")


def _key_value(c: Comparison, target: Target, kind: str, key: str) -> ColumnElement[bool]:
    table = {"metrics": target.metrics, "params": target.params, "tags": target.tags}[kind]
    condition: list[ColumnElement[bool]] = [_owner_key(table) == target.owner, table.key == key]
    if isinstance(c.value, Literal):
        value = c.value.value
        if kind == "metrics":
            if not isinstance(value, int | float) or isinstance(value, bool):
                raise _bad(c, f"metrics are numbers; got {value!r}")
            condition.append(_OPS[c.op](table.value, _float(c, value)))
        elif kind == "params" and isinstance(value, int | float) and not isinstance(value, bool):
            condition.append(_OPS[c.op](table.value_num, _float(c, value)))
        else:
            condition.append(_OPS[c.op](table.value, _text(value)))
    return sa.exists().where(*condition)


def _float(c: Comparison, value: float) -> float:
    try:
        return float(value)
    except OverflowError:  # a whole number of hundreds of digits
        raise _bad(c, "number out of range") from None


def _text(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _dataset(c: Comparison, target: Target, resolve: Callable[[str], str]) -> ColumnElement[bool]:
    if c.op not in ("=", ":", "!="):
        raise _bad(c, "dataset supports =, != and :")
    table = target.datasets
    condition = [_owner_key(table) == target.owner]
    if isinstance(c.value, Literal):
        condition.append(target.dataset_column == resolve(_text(c.value.value)))
    found = sa.exists().where(*condition)
    return sa.not_(found) if c.op == "!=" else found


def _column(c: Comparison, target: Target, name: str) -> ColumnElement[bool]:
    column = target.columns[name]
    if not isinstance(c.value, Literal):
        return column.is_not(None)  # type: ignore[no-any-return]
    value: Any = c.value.value
    if name == "state":
        value = _state(c, str(value))
    elif name in target.times:
        value = _time(c, str(value))
    elif name == "number" and isinstance(value, str):
        value = int(value.removeprefix("v")) if value.removeprefix("v").isdigit() else value
    if isinstance(value, int) and not isinstance(value, bool) and not -(2**63) <= value < 2**63:
        raise _bad(c, f"{value} is out of range: {name} is a 64-bit whole number")
    return _OPS[c.op](column, value)  # type: ignore[no-any-return]


def _state(c: Comparison, text: str) -> int:
    names = [n.removeprefix("RUN_STATE_") for n in pb.RunState.keys() if n != "RUN_STATE_UNSPECIFIED"]  # noqa: SIM118
    key = text.upper().removeprefix("RUN_STATE_")
    if key not in names:
        raise _bad(c, f"unknown state {text!r}; states are {', '.join(names)}")
    return pb.RunState.Value("RUN_STATE_" + key)


def _time(c: Comparison, text: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as error:
        raise _bad(c, f"{text!r} is not an RFC 3339 time such as 2026-01-31T12:00:00Z") from error
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


@dataclass(frozen=True)
class Ordering:
    """`order_by` parsed: the leading metric (if any) joins its rows; the rest are columns."""

    metric: str | None
    metric_desc: bool
    columns: list[tuple[Any, bool]]


def parse_order_by(text: str, target: Target, default: str) -> Ordering:
    """`metrics.val_accuracy desc, create_time` -> an Ordering; unknown keys are INVALID_ARGUMENT."""
    metric: str | None = None
    metric_desc = False
    columns: list[tuple[Any, bool]] = []
    for index, part in enumerate((text or default).split(",")):
        words = part.split()
        if not words or len(words) > 2 or (len(words) == 2 and words[1].lower() not in ("asc", "desc")):
            raise InvalidArgument(
                f"invalid order_by {text!r}: use `field [asc|desc]` separated by commas, e.g. "
                "`metrics.val_accuracy desc`",
                metadata={"field": "order_by"},
            )
        desc = len(words) == 2 and words[1].lower() == "desc"
        field = words[0]
        if field.startswith("metrics.") and index == 0:
            metric, metric_desc = field.removeprefix("metrics."), desc
            if not 1 <= len(metric) <= MAX_KEY:
                raise InvalidArgument(
                    f"invalid order_by {text!r}: order by metrics.<name> with a name of 1-{MAX_KEY} characters, "
                    "e.g. `metrics.val_accuracy desc`",
                    metadata={"field": "order_by"},
                )
        elif field in target.columns:
            columns.append((target.columns[field], desc))
        else:
            allowed = ", ".join(["metrics.<name> (first)", *sorted(target.columns)])
            raise InvalidArgument(
                f"cannot order {target.kind} by {field!r}; order by {allowed}", metadata={"field": "order_by"}
            )
    return Ordering(metric, metric_desc, columns)


def apply_ordering(query: Any, ordering: Ordering, target: Target) -> Any:
    """Join the leading metric and add ORDER BY clauses, the owner id last for a stable order.

    Ordered by a metric alone, ties go by the metric row's owner id in the metric's direction:
    the order of the (..., key, value, owner) index, which the database can then read as it is. Owners
    without a number for the metric (none, or NaN) are left out."""
    if ordering.metric is None:
        for column, desc in ordering.columns:
            query = query.order_by(column.desc() if desc else column.asc())
        return query.order_by(col(target.owner).desc())
    table = target.metrics
    # A run whose last value of the metric is NaN (NULL) is left out, as is one without the metric.
    query = query.join(
        table, sa.and_(_owner_key(table) == target.owner, table.key == ordering.metric, table.value.is_not(None))
    )
    if not ordering.columns:
        keys = (table.value, _owner_key(table))
        return query.order_by(*(k.desc() if ordering.metric_desc else k.asc() for k in keys))
    query = query.order_by(table.value.desc() if ordering.metric_desc else table.value.asc())
    for column, desc in ordering.columns:
        query = query.order_by(column.desc() if desc else column.asc())
    return query.order_by(col(target.owner).desc())
