"""Users, service accounts and their roles in projects."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlmodel import select

from atelier.errors import AlreadyExists, InvalidArgument, NotFound
from atelier.iam.v1 import resources_pb2
from atelier.names import parse_name, validate_id
from atelier.runtime.auth import CLUSTER_ROLE_NAMES, ROLE_NAMES
from atelier.runtime.database import transaction
from atelier.runtime.fields import check_enum
from gateway.iam.tables import MemberRow, PrincipalRow

Kind = resources_pb2.PrincipalKind
Role = resources_pb2.Role
ClusterRole = resources_pb2.ClusterRole

COLLECTIONS = {Kind.PRINCIPAL_KIND_USER: "users", Kind.PRINCIPAL_KIND_SERVICE_ACCOUNT: "serviceAccounts"}
KINDS = {collection: kind for kind, collection in COLLECTIONS.items()}


def principal_name(kind: int, principal_id: str) -> str:
    """`users/{id}` or `serviceAccounts/{id}`."""
    return f"{COLLECTIONS[kind]}/{principal_id}"  # type: ignore[index]


def parse_principal(name: str, field: str = "name") -> tuple[int, str]:
    """The kind and id of `users/{user}` or `serviceAccounts/{service_account}`."""
    collection, _, rest = name.partition("/")
    if collection not in KINDS or "/" in rest:
        raise InvalidArgument(
            f"invalid {field} {name!r}: expected users/{{user}} or serviceAccounts/{{service_account}}",
            metadata={"field": field, "value": name},
        )
    return KINDS[collection], validate_id("principal", rest)


def _cluster_roles(roles: Iterable[int]) -> str:
    allowed = set(CLUSTER_ROLE_NAMES.values())
    chosen = sorted(set(roles))
    for role in chosen:
        if role not in allowed:
            names = ", ".join(ClusterRole.Name(r) for r in sorted(allowed))  # type: ignore[arg-type]
            raise InvalidArgument(f"unknown cluster role {role}; allowed: {names}", metadata={"field": "cluster_roles"})
    return ",".join(str(r) for r in chosen)


def _role(role: int, field: str = "role") -> int:
    if role not in ROLE_NAMES.values():
        raise InvalidArgument(
            f"invalid {field} {role}: use ROLE_VIEWER, ROLE_MEMBER or ROLE_ADMIN", metadata={"field": field}
        )
    return role


@dataclass(frozen=True)
class Principal:
    kind: int
    id: str
    display_name: str
    cluster_roles: tuple[int, ...]
    disabled: bool
    create_time: datetime

    @property
    def name(self) -> str:
        return principal_name(self.kind, self.id)

    @staticmethod
    def of(row: PrincipalRow) -> Principal:
        roles = tuple(int(r) for r in row.cluster_roles.split(",") if r)
        return Principal(row.kind, row.id, row.display_name, roles, row.disabled, row.create_time)


@dataclass(frozen=True)
class Member:
    project: str
    principal: Principal
    role: int
    update_time: datetime

    @property
    def name(self) -> str:
        return f"projects/{self.project}/members/{self.principal.id}"


class Principals:
    """Users and service accounts (one id namespace) and project membership."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def create(
        self, kind: int, principal_id: str, display_name: str = "", cluster_roles: Iterable[int] = ()
    ) -> Principal:
        validate_id("user" if kind == Kind.PRINCIPAL_KIND_USER else "service_account", principal_id)
        row = PrincipalRow(
            id=principal_id,
            kind=kind,
            display_name=display_name,
            cluster_roles=_cluster_roles(cluster_roles),
            create_time=datetime.now(UTC),
        )
        with transaction(self.engine) as session:
            existing = session.get(PrincipalRow, principal_id)
            if existing is not None:
                raise AlreadyExists(
                    f"{principal_name(existing.kind, principal_id)} already exists (users and service accounts "
                    "share one namespace of ids)"
                )
            session.add(row)
        return Principal.of(row)

    def get(self, name: str) -> Principal:
        kind, principal_id = parse_principal(name)
        with transaction(self.engine) as session:
            row = session.get(PrincipalRow, principal_id)
            if row is None or row.kind != kind:
                raise NotFound(f"{name} not found")
            return Principal.of(row)

    def get_by_id(self, principal_id: str) -> Principal:
        with transaction(self.engine) as session:
            row = session.get(PrincipalRow, principal_id)
            if row is None:
                raise NotFound(f"no user or service account {principal_id!r}")
            return Principal.of(row)

    def page(self, kind: int = 0, after: str = "", limit: int = 100) -> list[Principal]:
        check_enum("kind", kind, Kind)
        query = select(PrincipalRow).where(PrincipalRow.id > after).order_by(PrincipalRow.id).limit(limit)  # type: ignore[arg-type]
        if kind:
            query = query.where(PrincipalRow.kind == kind)
        with transaction(self.engine) as session:
            return [Principal.of(row) for row in session.exec(query)]

    def update(
        self,
        name: str,
        display_name: str | None = None,
        cluster_roles: Iterable[int] | None = None,
        disabled: bool | None = None,
    ) -> Principal:
        kind, principal_id = parse_principal(name)
        with transaction(self.engine) as session:
            row = session.get(PrincipalRow, principal_id)
            if row is None or row.kind != kind:
                raise NotFound(f"{name} not found")
            if display_name is not None:
                row.display_name = display_name
            if cluster_roles is not None:
                row.cluster_roles = _cluster_roles(cluster_roles)
            if disabled is not None:
                row.disabled = disabled
            session.add(row)
            return Principal.of(row)

    def count(self, kind: int = 0) -> int:
        query = select(sa.func.count()).select_from(PrincipalRow)
        if kind:
            query = query.where(PrincipalRow.kind == kind)
        with transaction(self.engine) as session:
            return int(session.exec(query).one())  # type: ignore[call-overload]

    def set_member(self, project: str, principal: str, role: int, create: bool) -> Member:
        """Give `principal` `role` in `project`; `create` refuses an existing member, else one must exist."""
        validate_id("project", project)
        kind, principal_id = parse_principal(principal, "member.principal")
        _role(role, "member.role")
        with transaction(self.engine) as session:
            who = session.get(PrincipalRow, principal_id)
            if who is None or who.kind != kind:
                raise NotFound(f"{principal} not found", metadata={"field": "member.principal"})
            row = session.get(MemberRow, (project, principal_id))
            if create and row is not None:
                raise AlreadyExists(f"{principal} is already a member of project {project!r}; update its role")
            if not create and row is None:
                raise NotFound(f"{principal} is not a member of project {project!r}")
            row = row or MemberRow(project=project, principal_id=principal_id, role=role, update_time=datetime.now(UTC))
            row.role, row.update_time = role, datetime.now(UTC)
            session.add(row)
            return Member(project, Principal.of(who), role, row.update_time)

    def remove_member(self, name: str) -> None:
        values = parse_name(name, "projects/{project}/members/{member}")
        with transaction(self.engine) as session:
            row = session.get(MemberRow, (values["project"], values["member"]))
            if row is None:
                raise NotFound(f"{name} not found")
            session.delete(row)

    def members(self, project: str) -> list[Member]:
        validate_id("project", project)
        query = (
            select(MemberRow, PrincipalRow)
            .join(PrincipalRow, MemberRow.principal_id == PrincipalRow.id)  # type: ignore[arg-type]
            .where(MemberRow.project == project)
            .order_by(MemberRow.principal_id)
        )
        with transaction(self.engine) as session:
            return [Member(m.project, Principal.of(p), m.role, m.update_time) for m, p in session.exec(query)]

    def roles_of(self, principal_id: str) -> dict[str, int]:
        """Project -> role of one principal."""
        query = select(MemberRow).where(MemberRow.principal_id == principal_id)
        with transaction(self.engine) as session:
            return {row.project: row.role for row in session.exec(query)}
