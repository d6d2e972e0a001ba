"""Deployments as stored: create, read, list, update, delete, and their state."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.engine import Engine
from sqlmodel import col, select

from atelier.errors import AlreadyExists, NotFound
from atelier.inference.v1 import resources_pb2 as pb
from atelier.names import parse_name, validate_id
from atelier.runtime.database import transaction
from atelier.runtime.pagination import decode_token, encode_token, page_size
from services.inference.spec import DeploymentSpec
from services.inference.tables import DeploymentRow

DEPLOYMENT = "projects/{project}/deployments/{deployment}"


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class DeploymentView:
    """A deployment as stored."""

    project: str
    deployment_id: str
    model_ref: str
    model_version: str
    spec: DeploymentSpec
    state: int
    state_reason: str
    description: str
    create_time: datetime
    update_time: datetime

    @property
    def name(self) -> str:
        return f"projects/{self.project}/deployments/{self.deployment_id}"


def _view(row: DeploymentRow) -> DeploymentView:
    return DeploymentView(
        project=row.project,
        deployment_id=row.deployment_id,
        model_ref=row.model_ref,
        model_version=row.model_version,
        spec=DeploymentSpec.from_json(row.spec),
        state=row.state,
        state_reason=row.state_reason,
        description=row.description,
        create_time=row.create_time,
        update_time=row.update_time,
    )


def parse_deployment(name: str) -> tuple[str, str]:
    """(project, deployment id) of `projects/{project}/deployments/{deployment}`."""
    parts = parse_name(name, DEPLOYMENT)
    return parts["project"], parts["deployment"]


class Deployments:
    """The deployment table."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def create(
        self,
        project: str,
        deployment_id: str,
        model_ref: str,
        model_version: str,
        spec: DeploymentSpec,
        description: str,
    ) -> DeploymentView:
        validate_id("project", project)
        validate_id("deployment", deployment_id)
        now = utcnow()
        with transaction(self.engine) as session:
            existing = session.exec(select(DeploymentRow).where(DeploymentRow.deployment_id == deployment_id)).first()
            if existing is not None:
                raise AlreadyExists(
                    f"deployment {deployment_id!r} exists already (projects/{existing.project}/deployments/"
                    f"{deployment_id}); a deployment id is the model name clients call, unique on this server",
                    metadata={"resource": f"projects/{existing.project}/deployments/{deployment_id}"},
                )
            row = DeploymentRow(
                project=project,
                deployment_id=deployment_id,
                model_ref=model_ref,
                model_version=model_version,
                spec=spec.to_json(),
                state=pb.DEPLOYMENT_STATE_LOADING,
                description=description,
                create_time=now,
                update_time=now,
            )
            session.add(row)
            session.flush()
            return _view(row)

    def _row(self, session: Any, name: str) -> DeploymentRow:
        project, deployment_id = parse_deployment(name)
        row = session.exec(
            select(DeploymentRow).where(DeploymentRow.project == project, DeploymentRow.deployment_id == deployment_id)
        ).first()
        if row is None:
            raise NotFound(f"deployment {name} not found", metadata={"resource": name})
        return row  # type: ignore[no-any-return]

    def get(self, name: str) -> DeploymentView:
        with transaction(self.engine) as session:
            return _view(self._row(session, name))

    def by_id(self, deployment_id: str) -> DeploymentView | None:
        with transaction(self.engine) as session:
            row = session.exec(select(DeploymentRow).where(DeploymentRow.deployment_id == deployment_id)).first()
            return None if row is None else _view(row)

    def list_deployments(self, parent: str, size: int = 0, token: str = "") -> tuple[list[DeploymentView], str]:
        project = parse_name(parent, "projects/{project}", "parent", wildcard=True)["project"]
        limit = page_size(size)
        after = decode_token(token, "")
        with transaction(self.engine) as session:
            query = select(DeploymentRow).where(col(DeploymentRow.deployment_id) > after)
            if project != "-":
                query = query.where(DeploymentRow.project == project)
            rows = session.exec(query.order_by(col(DeploymentRow.deployment_id)).limit(limit + 1)).all()
        views = [_view(r) for r in rows[:limit]]
        return views, encode_token(views[-1].deployment_id) if len(rows) > limit else ""

    def all(self) -> list[DeploymentView]:
        with transaction(self.engine) as session:
            return [_view(r) for r in session.exec(select(DeploymentRow)).all()]

    def update(
        self, name: str, *, model_ref: str, model_version: str, spec: DeploymentSpec, description: str, state: int
    ) -> DeploymentView:
        with transaction(self.engine) as session:
            row = self._row(session, name)
            row.model_ref = model_ref
            row.model_version = model_version
            row.spec = spec.to_json()
            row.description = description
            row.state = state
            row.state_reason = "" if state == pb.DEPLOYMENT_STATE_LOADING else row.state_reason
            row.update_time = utcnow()
            session.add(row)
            session.flush()
            return _view(row)

    def set_state(self, deployment_id: str, state: int, reason: str = "", model_version: str = "") -> None:
        """Record where a deployment's model is; a deleted deployment is left alone."""
        with transaction(self.engine) as session:
            row = session.exec(select(DeploymentRow).where(DeploymentRow.deployment_id == deployment_id)).first()
            if row is None:
                return
            row.state = state
            row.state_reason = reason
            if model_version:
                row.model_version = model_version
            row.update_time = utcnow()
            session.add(row)

    def delete(self, name: str) -> DeploymentView:
        with transaction(self.engine) as session:
            row = self._row(session, name)
            view = _view(row)
            session.delete(row)
            return view
