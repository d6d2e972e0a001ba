"""Registered models and their versions: lookup by reference, search, deletion (registration is in
`new_versions`)."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from atelier.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound
from atelier.names import parse_name, validate_id
from atelier.runtime.database import transaction
from atelier.runtime.pagination import decode_token, encode_token, page_size
from services.registry.datalink import DataLink
from services.registry.experiments import now
from services.registry.runs import Tracking
from services.registry.search import VERSIONS, apply_ordering, compile_filter, parse_order_by
from services.registry.tables import (
    AliasRow,
    ModelRow,
    ModelVersionRow,
    VersionDatasetRow,
    VersionMetricRow,
    VersionParamRow,
    VersionTagRow,
)
from services.registry.usage import Usage, usage_of_runs

MODEL = "projects/{project}/models/{model}"
VERSION = "projects/{project}/models/{model}/versions/{version}"
# At most nine digits: a larger number names no version (and would not fit the column).
_NUMBER = re.compile(r"v([1-9][0-9]{0,8})")


@dataclass
class VersionView:
    """A model version with its model, aliases and the usage of its lineage run."""

    project: str
    model: ModelRow
    row: ModelVersionRow
    aliases: list[str] = field(default_factory=list)
    usage: Usage | None = None

    @property
    def name(self) -> str:
        return f"projects/{self.project}/models/{self.model.name}/versions/v{self.row.number}"


class Models:
    """The model-registry side of the registry."""

    def __init__(self, engine: Engine, data: DataLink, tracking: Tracking) -> None:
        self.engine = engine
        self.data = data
        self.tracking = tracking
        self._known_models: dict[tuple[str, str], ModelRow] = {}

    # Registered models ------------------------------------------------------------------------

    def create_model(self, parent: str, model_id: str, description: str) -> ModelRow:
        project = parse_name(parent, "projects/{project}", "parent")["project"]
        validate_id("registered_model", model_id)
        with transaction(self.engine) as session:
            if self._model(session, project, model_id, missing_ok=True):
                raise AlreadyExists(f"model {model_id!r} already exists in project {project!r}")
            row = ModelRow(project=project, name=model_id, description=description, create_time=now())
            session.add(row)
        return row

    def get_model(self, name: str) -> tuple[ModelRow, dict[str, int]]:
        parts = parse_name(name, MODEL)
        with transaction(self.engine) as session:
            row = self._model(session, parts["project"], parts["model"])
            assert row is not None
            return row, self._aliases(session, row)

    def list_models(self, parent: str, size: int, token: str) -> tuple[list[tuple[ModelRow, dict[str, int]]], str]:
        project = parse_name(parent, "projects/{project}", "parent")["project"]
        limit = page_size(size)
        with transaction(self.engine) as session:
            rows = session.exec(
                select(ModelRow)
                .where(ModelRow.project == project, ModelRow.name > decode_token(token, ""))
                .order_by(col(ModelRow.name))
                .limit(limit + 1)
            ).all()
            page = [(r, self._aliases(session, r)) for r in rows[:limit]]
        return page, encode_token(rows[limit - 1].name) if len(rows) > limit else ""

    def _model(self, session: Session, project: str, name: str, missing_ok: bool = False) -> ModelRow | None:
        row = session.exec(select(ModelRow).where(ModelRow.project == project, ModelRow.name == name)).first()
        if row is None and not missing_ok:
            raise NotFound(
                f"model {name!r} not found in project {project!r}",
                metadata={"resource": f"projects/{project}/models/{name}"},
            )
        return row

    def known_model(self, project: str, name: str) -> ModelRow | None:
        """The registered model if it has been seen already (no database read)."""
        return self._known_models.get((project, name))

    def ensure_model(self, project: str, name: str) -> ModelRow:
        """The registered model, created if missing (a concurrent creation of it is fine). Models
        are never renamed or deleted, so once seen they are remembered."""
        known = self._known_models.get((project, name))
        if known is not None:
            return known
        with transaction(self.engine) as session:
            row = self._model(session, project, name, missing_ok=True)
        if row is None:
            validate_id("registered_model", name)
            with contextlib.suppress(AlreadyExists), transaction(self.engine) as session:
                session.add(ModelRow(project=project, name=name, create_time=now()))
            with transaction(self.engine) as session:
                row = self._model(session, project, name)
        assert row is not None
        self._known_models[(project, name)] = row
        return row

    def _aliases(self, session: Session, model: ModelRow) -> dict[str, int]:
        """Alias name -> version number."""
        rows = session.exec(
            select(AliasRow.name, ModelVersionRow.number)
            .join(ModelVersionRow, col(ModelVersionRow.id) == AliasRow.version_id)
            .where(AliasRow.model_id == model.id)
        ).all()
        return dict(rows)

    # Versions ---------------------------------------------------------------------------------

    def resolve(self, session: Session, project: str, model_name: str, ref: str) -> VersionView:
        """A version by `v{N}`, `latest` or an alias."""
        model = self._model(session, project, model_name)
        assert model is not None
        query = select(ModelVersionRow).where(ModelVersionRow.model_id == model.id)
        number = _NUMBER.fullmatch(ref)
        if number:
            query = query.where(ModelVersionRow.number == int(number.group(1)))
        elif ref == "latest":
            query = query.order_by(col(ModelVersionRow.number).desc()).limit(1)
        else:
            query = query.join(AliasRow, col(AliasRow.version_id) == ModelVersionRow.id).where(AliasRow.name == ref)
        row = session.exec(query).first()
        if row is None:
            raise NotFound(
                f"no version {project}/{model_name}@{ref}: references are vN, latest or an alias",
                metadata={"resource": VERSION.format(project=project, model=model_name, version=ref)},
            )
        aliases = [a for a, n in self._aliases(session, model).items() if n == row.number]
        return VersionView(project, model, row, sorted(aliases))

    def get_version(self, name: str) -> VersionView:
        parts = parse_name(name, VERSION)
        with transaction(self.engine) as session:
            view = self.resolve(session, parts["project"], parts["model"], parts["version"])
            view.usage = usage_of_runs(session, [view.row.run]).get(view.row.run)
        return view

    def list_versions(
        self, parent: str, text: str, order_by: str, size: int, token: str
    ) -> tuple[list[VersionView], str]:
        parts = parse_name(parent, MODEL, "parent", wildcard=True)
        project = parts["project"]
        limit = page_size(size)
        offset = decode_token(token, 0)
        if not isinstance(offset, int) or offset < 0:
            raise InvalidArgument("page_token is not a token this service issued", metadata={"field": "page_token"})
        condition = compile_filter(text, VERSIONS, lambda ref: self.data.dataset_version(ref, project))
        ordering = parse_order_by(order_by, VERSIONS, "create_time desc")
        query = select(ModelVersionRow)
        known: dict[int | None, ModelRow] = {}
        with transaction(self.engine) as session:
            if parts["model"] == "-":
                in_project = select(ModelRow.id).where(ModelRow.project == project)
                query = query.where(col(ModelVersionRow.model_id).in_(in_project))
            else:
                model = self._known_models.get((project, parts["model"])) or self._model(
                    session, project, parts["model"]
                )
                assert model is not None
                known[model.id] = model
                # Ordered by a metric, the metric rows (which carry the model id) lead: the planner
                # walks (model_id, key, value) and stops at the page size. A condition on the
                # versions' own model_id would have it read all the model's versions and sort.
                owner = VersionMetricRow.model_id if ordering.metric is not None else ModelVersionRow.model_id
                query = query.where(owner == model.id)
            if condition is not None:
                query = query.where(condition)
            query = apply_ordering(query, ordering, VERSIONS).offset(offset).limit(limit + 1)
            rows = session.exec(query).all()
            page = rows[:limit]
            views = self._views(session, project, page, known)
        return views, encode_token(offset + limit) if len(rows) > limit else ""

    def _views(
        self, session: Session, project: str, rows: Sequence[ModelVersionRow], models: dict[int | None, ModelRow]
    ) -> list[VersionView]:
        """Versions with their models (those not in `models` read in one query), aliases and their
        runs' usage (one query for the page)."""
        ids = [r.id for r in rows]
        missing = {r.model_id for r in rows} - set(models)
        if missing:
            models.update((m.id, m) for m in session.exec(select(ModelRow).where(col(ModelRow.id).in_(missing))).all())
        aliases: dict[int, list[str]] = {}
        for version_id, alias in session.exec(
            select(AliasRow.version_id, AliasRow.name).where(col(AliasRow.version_id).in_(ids))
        ).all():
            aliases.setdefault(version_id, []).append(alias)
        usage = usage_of_runs(session, {r.run for r in rows})
        return [
            VersionView(project, models[r.model_id], r, sorted(aliases.get(r.id or 0, [])), usage.get(r.run))
            for r in rows
        ]

    def delete_version(self, name: str) -> None:
        parts = parse_name(name, VERSION)
        with transaction(self.engine) as session:
            view = self.resolve(session, parts["project"], parts["model"], parts["version"])
            if view.aliases:
                raise FailedPrecondition(
                    f"{view.name} holds alias {', '.join(view.aliases)}; move the alias first",
                    metadata={"resource": view.name},
                )
            version_id = view.row.id
            for table in (VersionMetricRow, VersionParamRow, VersionTagRow, VersionDatasetRow):
                session.execute(sa.delete(table).where(table.version_id == version_id))  # type: ignore[attr-defined,arg-type]
            session.delete(view.row)
            pins = list(view.row.pins)
        for pin in pins:
            self.data.unpin(pin)
