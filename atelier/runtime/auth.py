"""Access control for every service: who is calling (a token, checked with the IAM service and
cached briefly) and whether the access table lets them make this call in this project.

`Authorizer.check` runs inside the runtime's one call wrapper, before the handler; it raises
UNAUTHENTICATED or PERMISSION_DENIED with a message that says what was missing. The caller's
identity and credentials are then in context variables for the handler and for calls the service
makes on the caller's behalf (`atelier/client/credentials.py` forwards them).
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from atelier.errors import AtelierError, InvalidArgument, PermissionDenied, Unauthenticated
from atelier.iam.v1 import resources_pb2
from atelier.runtime.access import OPEN_PREFIXES, RULES, WRITES, Permission, Rule
from atelier.runtime.caller import current_credentials

log = logging.getLogger(__name__)
Role = resources_pb2.Role
ClusterRole = resources_pb2.ClusterRole
ROLE_WORDS = {Role.ROLE_VIEWER: "viewer", Role.ROLE_MEMBER: "member", Role.ROLE_ADMIN: "admin"}
ROLE_NAMES = {word: role for role, word in ROLE_WORDS.items()}
"""A project role by the word people type (`viewer`, `member`, `admin`)."""
CLUSTER_ROLE_NAMES = {
    "admin": ClusterRole.CLUSTER_ROLE_ADMIN,
    "operator": ClusterRole.CLUSTER_ROLE_OPERATOR,
    "agent": ClusterRole.CLUSTER_ROLE_AGENT,
    "service": ClusterRole.CLUSTER_ROLE_SERVICE,
}
"""A cluster role by the word people type."""
NEEDED_ROLE = {
    Permission.READ: Role.ROLE_VIEWER,
    Permission.WRITE: Role.ROLE_MEMBER,
    Permission.WRITE_OR_SERVICE: Role.ROLE_MEMBER,
    Permission.ADMIN: Role.ROLE_ADMIN,
}
CLUSTER_ROLES = {
    Permission.OPERATOR: (ClusterRole.CLUSTER_ROLE_OPERATOR,),
    Permission.AGENT: (ClusterRole.CLUSTER_ROLE_AGENT, ClusterRole.CLUSTER_ROLE_OPERATOR),
    Permission.SERVICE: (ClusterRole.CLUSTER_ROLE_SERVICE,),
    Permission.CLUSTER_ADMIN: (),
}


@dataclass(frozen=True)
class Identity:
    """Who a token belongs to and what it may do."""

    principal: str
    cluster_roles: frozenset[int] = frozenset()
    project_roles: Mapping[str, int] = field(default_factory=dict)
    scope_project: str = ""
    scope_role: int = 0
    expires: float = 0.0
    """Unix time the token stops working; 0 for never."""

    @staticmethod
    def from_pb(message: resources_pb2.Identity) -> Identity:
        return Identity(
            principal=message.principal,
            cluster_roles=frozenset(message.cluster_roles),
            project_roles=dict(message.project_roles),
            scope_project=message.scope_project.removeprefix("projects/"),
            scope_role=message.scope_role,
            expires=message.expire_time.ToDatetime(UTC).timestamp() if message.HasField("expire_time") else 0.0,
        )

    @property
    def is_admin(self) -> bool:
        return ClusterRole.CLUSTER_ROLE_ADMIN in self.cluster_roles

    @property
    def reads_everything(self) -> bool:
        """Operators and services read every project."""
        return bool(self.cluster_roles & {ClusterRole.CLUSTER_ROLE_OPERATOR, ClusterRole.CLUSTER_ROLE_SERVICE})

    def role_in(self, project: str) -> int:
        """The role this identity has in `project`, limited by the token's scope."""
        if self.scope_project and project != self.scope_project:
            return 0
        if self.is_admin:
            role = int(Role.ROLE_ADMIN)
        else:
            role = self.project_roles.get(project, 0)
            if role < Role.ROLE_VIEWER and self.reads_everything:
                role = int(Role.ROLE_VIEWER)
        return min(role, self.scope_role) if self.scope_project else role


current_identity: contextvars.ContextVar[Identity | None] = contextvars.ContextVar("atelier_identity", default=None)


def acting_as(claimed: str) -> str:
    """Who a write is recorded as: with access control on, the authenticated caller (`alice` for
    `users/alice`, a service account by its full name), whatever the request claims; else the claim."""
    identity = current_identity.get()
    if identity is None:
        return claimed
    return identity.principal.removeprefix("users/")


Authenticate = Callable[[str], Awaitable[Identity]]
Lookup = Callable[[str], Awaitable[str]]


TOKEN_PREFIX = "atl_"


def new_secret() -> str:
    """A fresh token secret: `atl_<16 hex: the token's id>_<43 characters: 32 random bytes>`."""
    return f"{TOKEN_PREFIX}{secrets.token_hex(8)}_{secrets.token_urlsafe(32)}"


def bearer(header: str | None) -> str:
    """The token of an `authorization: Bearer <token>` header ('' when there is none)."""
    if not header:
        return ""
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthenticated("the authorization header must read `Bearer <token>`")
    return token.strip()


def field_value(request: Any, path: str) -> str:
    value = request
    for part in path.split("."):
        value = getattr(value, part, "")
    return str(value or "")


def project_of(rule: Rule, value: str) -> str:
    """The project a request names (`projects/{p}/...`, or a bare id in a `*project_id` field)."""
    if rule.field.endswith("project_id"):
        return value
    if value.startswith("projects/"):
        project = value.split("/", 2)[1]
        return "" if project == "-" else project
    return ""


def _principal_of(value: str) -> str:
    parts = value.split("/")
    return "/".join(parts[:2])


def authorize(identity: Identity, method: str, rule: Rule, project: str, value: str) -> None:
    """Raise PERMISSION_DENIED unless `identity` may make this call."""
    short = method.rsplit("/", 1)[-1]
    permission = rule.permission
    if permission in (Permission.PUBLIC, Permission.AUTHENTICATED):
        return
    if permission in (Permission.SELF, Permission.SELF_OR_SERVICE):
        if identity.is_admin or _principal_of(value) == identity.principal:
            return
        if permission is Permission.SELF_OR_SERVICE and ClusterRole.CLUSTER_ROLE_SERVICE in identity.cluster_roles:
            return
        raise PermissionDenied(f"{identity.principal} may not call {short} for {value or 'another principal'}")
    if permission in CLUSTER_ROLES:
        allowed = CLUSTER_ROLES[permission]
        if identity.is_admin or identity.cluster_roles & set(allowed):
            return
        words = " or ".join(ClusterRole.Name(r).removeprefix("CLUSTER_ROLE_").lower() for r in allowed) or "admin"
        raise PermissionDenied(f"{short} needs the cluster role {words}; {identity.principal} does not have it")
    if permission is Permission.WRITE_OR_SERVICE and ClusterRole.CLUSTER_ROLE_SERVICE in identity.cluster_roles:
        return
    needed = NEEDED_ROLE[permission]
    if not project:
        if identity.is_admin and not identity.scope_project:
            return
        if permission is Permission.READ and identity.reads_everything:
            return
        raise PermissionDenied(f"{short} across every project needs a cluster role; name one project instead")
    if identity.scope_project and project != identity.scope_project:
        raise PermissionDenied(
            f"this token is scoped to project {identity.scope_project!r}; {short} acts in project {project!r}"
        )
    role = identity.role_in(project)
    if role >= needed:
        return
    has = f"is only {ROLE_WORDS[role]}" if role else "has no role"  # type: ignore[index]
    raise PermissionDenied(
        f"{identity.principal} {has} in project {project!r}; {short} needs {ROLE_WORDS[needed]}",  # type: ignore[index]
        metadata={"project": project, "needed": ROLE_WORDS[needed]},  # type: ignore[index]
    )


class IdentityCache:
    """Tokens already checked, for `ttl` seconds (so a revoked token stops working within `ttl`)."""

    def __init__(self, authenticate: Authenticate, ttl: float = 5.0, size: int = 10_000) -> None:
        self._authenticate = authenticate
        self.ttl = ttl
        self._size = size
        self._known: dict[str, tuple[float, Identity | AtelierError]] = {}

    async def __call__(self, token: str) -> Identity:
        now = time.monotonic()
        known = self._known.get(token)
        if known is None or known[0] <= now:
            try:
                result: Identity | AtelierError = await self._authenticate(token)
            except Unauthenticated as error:
                result = error
            if self.ttl > 0:
                if len(self._known) >= self._size:
                    self._known.clear()
                self._known[token] = (now + self.ttl, result)
        else:
            result = known[1]
        if isinstance(result, AtelierError):
            raise result
        if result.expires and result.expires <= time.time():
            raise Unauthenticated(f"the token expired at {datetime.fromtimestamp(result.expires, UTC).isoformat()}")
        return result


@dataclass(frozen=True)
class AuditRecord:
    time: datetime
    principal: str
    method: str
    project: str
    resource: str
    peer: str
    code: str


AuditSink = Callable[[AuditRecord], None]


@dataclass
class CallAccess:
    """What the check found out about one call, for the audit record at its end."""

    identity: Identity | None
    project: str
    resource: str
    audited: bool


class Authorizer:
    """Checks each call against the access table. `enabled=False` lets everything through (a
    single-user stack on 127.0.0.1)."""

    def __init__(
        self,
        authenticate: Authenticate,
        *,
        rules: Mapping[str, Rule] = RULES,
        lookups: Mapping[str, Lookup] | None = None,
        audit: AuditSink | None = None,
    ) -> None:
        self.authenticate = authenticate
        self.rules = rules
        self.lookups: dict[str, Lookup] = dict(lookups or {})
        self.audit = audit

    @staticmethod
    def applies_to(method: str) -> bool:
        return not method.startswith(OPEN_PREFIXES)

    async def check(self, method: str, request: Any, header: str | None) -> CallAccess:
        """Authenticate and authorise one call whose (first) request message is `request`."""
        rule = self.rules.get(method)
        token = bearer(header)
        if rule is None:
            raise PermissionDenied(f"{method} is not in the access table; calls to it are refused")
        if rule.permission is Permission.PUBLIC:
            return CallAccess(None, "", "", False)
        if not token:
            raise Unauthenticated(
                f"{method.rsplit('/', 1)[-1]} needs credentials: run `atelier login` or set ATELIER_TOKEN"
            )
        identity = await self.authenticate(token)
        value = field_value(request, rule.field) if rule.field and request is not None else ""
        project = project_of(rule, value)
        if rule.lookup and value:
            lookup = self.lookups.get(rule.lookup)
            if lookup is None:
                raise PermissionDenied(f"{method} needs the {rule.lookup!r} lookup, which this service lacks")
            project = await lookup(value)
        authorize(identity, method, rule, project, value)
        current_identity.set(identity)
        current_credentials.set(header)
        audited = self.audit is not None and rule.permission in WRITES and not _reads(method)
        return CallAccess(identity, project, value, audited)

    def record(self, method: str, access: CallAccess | None, header_peer: str, code: str) -> None:
        """Hand a finished write to the audit log."""
        if self.audit is None or access is None or not access.audited or access.identity is None:
            return
        self.audit(
            AuditRecord(
                datetime.now(UTC),
                access.identity.principal,
                method,
                access.project,
                access.resource,
                header_peer,
                code,
            )
        )

    async def checked_stream(
        self, method: str, first: Any, requests: AsyncIterator[Any], header: str | None
    ) -> AsyncIterator[Any]:
        """The rest of a client stream whose first message was checked: a later message naming
        another resource (a stream of inference requests may change models) is checked too."""
        if first is None:
            return
        rule = self.rules.get(method)
        checked = field_value(first, rule.field) if rule is not None and rule.field else ""
        yield first
        async for message in requests:
            value = field_value(message, rule.field) if rule is not None and rule.field else ""
            if value != checked:
                await self.check(method, message, header)
                checked = value
            yield message


def _reads(method: str) -> bool:
    name = method.rsplit("/", 1)[-1]
    return name.startswith(("Get", "List", "Read"))


LOOPBACK = ("127.0.0.1", "localhost", "::1")


def validate_mode(auth: str, host: str) -> bool:
    """Whether auth is on, refusing `off` on anything but loopback; `auto` is on unless on loopback."""
    if auth not in ("on", "off", "auto"):
        raise InvalidArgument(f"ATELIER_AUTH is {auth!r}; use on, off or auto")
    if auth == "auto":
        return host not in LOOPBACK
    if auth == "off" and host not in LOOPBACK:
        raise InvalidArgument(
            f"ATELIER_AUTH=off is allowed only on 127.0.0.1 (this service binds {host}); "
            "turn auth on or bind to 127.0.0.1"
        )
    return auth == "on"


async def no_identity(token: str) -> Identity:
    """The authenticator of a service told of no IAM service: every token is refused."""
    await asyncio.sleep(0)
    raise Unauthenticated("this service knows no IAM service to check tokens with (set ATELIER_IAM_ADDRESS)")
