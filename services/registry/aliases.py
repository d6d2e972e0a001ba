"""Aliases (`production`, `staging`, ...): moves gated on metrics, with the history of every move."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

from sqlmodel import col, select

from atelier.errors import FailedPrecondition, InvalidArgument, NotFound
from atelier.names import parse_name, validate_id
from atelier.runtime.database import transaction
from atelier.runtime.pagination import decode_token, encode_token, page_size
from services.registry.conditions import comparisons, failed_conditions
from services.registry.experiments import now
from services.registry.filters import And, Comparison, Expr, Field, Literal, Not, Or, parse_filter
from services.registry.models import MODEL, Models, VersionView
from services.registry.runs import numeric
from services.registry.tables import AliasEventRow, AliasRow

_RESERVED = re.compile(r"latest|v[0-9]+")


def _lookup(new: VersionView, current: VersionView | None) -> object:
    def lookup(field: Field) -> object:
        path = field.path
        holder: VersionView | None = new
        if path[0] == "current":
            holder, path = current, path[1:]
        if holder is None or len(path) != 2:
            raise KeyError(str(field))
        kind, key = path
        raw: dict[str, str] = holder.row.lineage.get("params", {})
        params = {k: numeric(v) if numeric(v) is not None else v for k, v in raw.items()}
        sources: dict[str, Mapping[str, object]] = {
            "metrics": holder.row.metrics,
            "tags": holder.row.tags,
            "params": params,
        }
        if kind not in sources:
            raise KeyError(str(field))
        return sources[kind][key]

    return lookup


def _mentions_current(comparison: Comparison) -> bool:
    value = comparison.value
    return comparison.field.path[0] == "current" or (isinstance(value, Field) and value.path[0] == "current")


def _without_current(expr: Expr | None) -> Expr | None:
    """The gate with every condition on `current.` taken as true (None when nothing is left)."""
    if expr is None or isinstance(expr, Comparison):
        return None if expr is None or _mentions_current(expr) else expr
    if isinstance(expr, Not):
        inner = _without_current(expr.item)
        return None if inner is None else Not(inner)
    items = [_without_current(item) for item in expr.items]
    if isinstance(expr, Or):
        return None if any(i is None for i in items) else Or(tuple(i for i in items if i is not None))
    kept = tuple(i for i in items if i is not None)
    return None if not kept else kept[0] if len(kept) == 1 else And(kept)


_GATE_KINDS = ("metrics", "params", "tags")


def _check_gate_fields(expr: Expr | None) -> None:
    """Refuse a gate naming a field it cannot compare: gates compare the versions' metrics, params and
    tags (the current holder's as `current.metrics.<name>`), nothing else."""
    for comparison in comparisons(expr):
        value = comparison.value
        path = comparison.field.path[1:] if comparison.field.path[0] == "current" else comparison.field.path
        if (
            path[:1] == ("metrics",)
            and isinstance(value, Literal)
            and (not isinstance(value.value, int | float) or isinstance(value.value, bool))
        ):
            raise InvalidArgument(
                f"a gate compares {comparison.field} with {value.value!r}: metrics are numbers",
                metadata={"field": "gate", "value": str(comparison.field)},
            )
        for field in (comparison.field, comparison.value):
            if not isinstance(field, Field):
                continue
            path = field.path[1:] if field.path[0] == "current" else field.path
            if len(path) != 2 or path[0] not in _GATE_KINDS:
                raise InvalidArgument(
                    f"a gate cannot compare {field}: gates compare metrics.<name>, params.<name> or tags.<name> "
                    "(the current holder's as current.metrics.<name>)",
                    metadata={"field": "gate", "value": str(field)},
                )


class Aliases:
    """Set, delete and list the history of aliases."""

    def __init__(self, models: Models) -> None:
        self.models = models
        self.engine = models.engine

    def set(self, model: str, alias: str, ref: str, gate: str, author: str) -> tuple[AliasRow, VersionView]:
        parts = parse_name(model, MODEL, "model")
        validate_id("alias", alias)
        if _RESERVED.fullmatch(alias):
            raise InvalidArgument(f"alias {alias!r} is reserved: 'latest' and vN already name versions")
        expr = parse_filter(gate)
        _check_gate_fields(expr)
        if ref.startswith("projects/"):
            named = parse_name(ref, "projects/{project}/models/{model}/versions/{version}", "version")
            if (named["project"], named["model"]) != (parts["project"], parts["model"]):
                raise InvalidArgument(
                    f"version {ref!r} is not a version of {model}: an alias points within its model",
                    metadata={"field": "version", "value": ref},
                )
            ref = named["version"]
        with transaction(self.engine) as session:
            new = self.models.resolve(session, parts["project"], parts["model"], ref)
            existing = session.exec(
                select(AliasRow).where(AliasRow.model_id == new.model.id, AliasRow.name == alias)
            ).first()
            current = self.models.resolve(session, parts["project"], parts["model"], alias) if existing else None
            if current is None:
                # A first assignment has nothing to compare with: conditions on `current.` hold.
                expr = _without_current(expr)
            if expr is not None:
                failed = failed_conditions(expr, _lookup(new, current))  # type: ignore[arg-type]
                if failed:
                    holder = f" (held by v{current.row.number})" if current else ""
                    raise FailedPrecondition(
                        f"refused to move {parts['model']}@{alias}{holder} to v{new.row.number}: "
                        f"gate failed: {'; '.join(failed)}",
                        metadata={"gate": gate, "failed": failed[0]},
                    )
            assert new.row.id is not None
            assert new.model.id is not None
            stamp = now()
            row = existing or AliasRow(model_id=new.model.id, name=alias, version_id=new.row.id, update_time=stamp)
            row.version_id, row.author, row.update_time = new.row.id, author, stamp
            session.add(row)
            session.add(
                AliasEventRow(
                    model_id=new.model.id,
                    alias=alias,
                    previous_number=current.row.number if current else 0,
                    number=new.row.number,
                    author=author,
                    gate=gate,
                    event_time=stamp,
                )
            )
            new.aliases = sorted({*new.aliases, alias})
        return row, new

    def delete(self, name: str, author: str) -> None:
        parts = parse_name(name, "projects/{project}/models/{model}/aliases/{alias}")
        with transaction(self.engine) as session:
            model = self.models._model(session, parts["project"], parts["model"])
            assert model is not None
            assert model.id is not None
            held = self.models._aliases(session, model)
            if parts["alias"] not in held:
                raise NotFound(
                    f"model {parts['project']}/{parts['model']} has no alias {parts['alias']!r}; its aliases are: "
                    f"{', '.join(sorted(held)) or '(none)'}",
                    metadata={"resource": name},
                )
            row = session.exec(
                select(AliasRow).where(AliasRow.model_id == model.id, AliasRow.name == parts["alias"])
            ).one()
            session.delete(row)
            session.add(
                AliasEventRow(
                    model_id=model.id,
                    alias=parts["alias"],
                    previous_number=held[parts["alias"]],
                    number=0,
                    author=author,
                    event_time=now(),
                )
            )

    def events(self, model: str, size: int, token: str) -> tuple[Sequence[AliasEventRow], str]:
        parts = parse_name(model, MODEL, "model")
        limit = page_size(size)
        with transaction(self.engine) as session:
            row = self.models._model(session, parts["project"], parts["model"])
            assert row is not None
            rows = session.exec(
                select(AliasEventRow)
                .where(AliasEventRow.model_id == row.id, col(AliasEventRow.id) < decode_token(token, 2**31 - 1))
                .order_by(col(AliasEventRow.id).desc())
                .limit(limit + 1)
            ).all()
        if len(rows) > limit:
            return rows[:limit], encode_token(rows[limit - 1].id)
        return rows, ""
