"""API tokens: random secrets shown once, kept only as a keyed BLAKE3 hash, expiring and revocable.

A secret reads `atl_<token id>_<random>`: the id finds the row in one lookup, the keyed hash of the
whole secret proves it, compared in constant time. The key lives with the IAM service, not in the
database, so a copy of the tables alone cannot be used to test guesses.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import blake3
from sqlalchemy.engine import Engine
from sqlmodel import select

from atelier.errors import InvalidArgument, NotFound, Unauthenticated
from atelier.iam.v1 import resources_pb2
from atelier.names import parse_name, validate_id
from atelier.runtime.auth import TOKEN_PREFIX as PREFIX
from atelier.runtime.auth import new_secret
from atelier.runtime.database import transaction
from atelier.runtime.timestamps import utc
from gateway.iam.principals import Principal, parse_principal, principal_name
from gateway.iam.tables import MemberRow, PrincipalRow, TokenRow

Role = resources_pb2.Role
LAST_USE_RESOLUTION = timedelta(minutes=1)
MAX_SCOPED_LIFETIME = timedelta(days=30)


@dataclass(frozen=True)
class Token:
    id: str
    principal: str
    display_name: str
    create_time: datetime
    expire_time: datetime | None
    last_use_time: datetime | None
    revoke_time: datetime | None
    scope_project: str
    scope_role: int

    @property
    def name(self) -> str:
        return f"{self.principal}/tokens/{self.id}"

    @staticmethod
    def of(row: TokenRow, principal: str) -> Token:
        def aware(moment: datetime | None) -> datetime | None:
            return None if moment is None else utc(moment)

        return Token(
            row.id,
            principal,
            row.display_name,
            utc(row.create_time),
            aware(row.expire_time),
            aware(row.last_use_time),
            aware(row.revoke_time),
            row.scope_project,
            row.scope_role,
        )


@dataclass(frozen=True)
class Authenticated:
    """Who a secret belongs to and what it may do."""

    principal: Principal
    token: Token
    project_roles: dict[str, int] = field(default_factory=dict)


class Tokens:
    """Creating, listing, revoking and checking tokens."""

    def __init__(self, engine: Engine, key: bytes) -> None:
        if len(key) != 32:
            raise InvalidArgument("the token key must be 32 bytes")
        self.engine = engine
        self._key = key

    def _hash(self, secret: str) -> bytes:
        return blake3.blake3(secret.encode(), key=self._key).digest()

    def create(
        self,
        parent: str,
        display_name: str = "",
        expire_time: datetime | None = None,
        scope_project: str = "",
        scope_role: int = 0,
    ) -> tuple[Token, str]:
        """A new token of `parent` and its secret (returned once, never stored)."""
        kind, principal_id = parse_principal(parent, "parent")
        now = datetime.now(UTC)
        if expire_time is not None and utc(expire_time) <= now:
            raise InvalidArgument(
                f"token.expire_time {utc(expire_time).isoformat()} is in the past", metadata={"field": "expire_time"}
            )
        if scope_project:
            scope_project = parse_name(scope_project, "projects/{project}", "token.scope_project")["project"]
            if expire_time is None or utc(expire_time) - now > MAX_SCOPED_LIFETIME:
                raise InvalidArgument(
                    "a project-scoped token needs token.expire_time at most 30 days ahead",
                    metadata={"field": "token.expire_time"},
                )
            if scope_role not in (0, Role.ROLE_VIEWER, Role.ROLE_MEMBER, Role.ROLE_ADMIN):
                raise InvalidArgument(f"invalid token.scope_role {scope_role}", metadata={"field": "token.scope_role"})
            scope_role = scope_role or Role.ROLE_MEMBER
        elif scope_role:
            raise InvalidArgument("token.scope_role needs token.scope_project", metadata={"field": "token.scope_role"})
        secret = new_secret()
        return self._store(
            kind, principal_id, parent, secret, display_name, now, expire_time, scope_project, scope_role
        )

    def register(self, parent: str, secret: str, display_name: str) -> Token:
        """Keep a secret made elsewhere (`atelier up` hands each service of the local stack its own; a
        deployment keeps its services' secrets in a file of its own) as a token of `parent`, revoking
        that principal's other tokens of the same display name. Registering a secret kept already (a
        restart with the same file) keeps its token as it is: revoked stays revoked."""
        kind, principal_id = parse_principal(parent, "parent")
        token_id = _token_id(secret)
        if not token_id:
            raise InvalidArgument("a registered secret must read atl_<16 hex>_<random>")
        now = datetime.now(UTC)
        with transaction(self.engine) as session:
            kept = session.get(TokenRow, token_id)
            if kept is not None and (
                kept.principal_id != principal_id or not hmac.compare_digest(kept.secret_hash, self._hash(secret))
            ):
                raise InvalidArgument(
                    f"another token already has the id {token_id} of the secret given for {parent}: "
                    "make a new secret for it"
                )
            query = select(TokenRow).where(TokenRow.principal_id == principal_id, TokenRow.display_name == display_name)
            for old in session.exec(query):
                if old.revoke_time is None and old.id != token_id:
                    old.revoke_time = now
                    session.add(old)
            if kept is not None:
                return Token.of(kept, parent)
        token, _ = self._store(kind, principal_id, parent, secret, display_name, now, None, "", 0)
        return token

    def _store(
        self,
        kind: int,
        principal_id: str,
        parent: str,
        secret: str,
        display_name: str,
        now: datetime,
        expire_time: datetime | None,
        scope_project: str,
        scope_role: int,
    ) -> tuple[Token, str]:
        token_id = _token_id(secret)
        row = TokenRow(
            id=token_id,
            principal_id=principal_id,
            secret_hash=self._hash(secret),
            display_name=display_name[:200],
            create_time=now,
            expire_time=expire_time,
            scope_project=scope_project,
            scope_role=scope_role,
        )
        with transaction(self.engine) as session:
            who = session.get(PrincipalRow, principal_id)
            if who is None or who.kind != kind:
                raise NotFound(f"{parent} not found")
            session.add(row)
        return Token.of(row, parent), secret

    def of_principal(self, parent: str, show_inactive: bool = False) -> list[Token]:
        kind, principal_id = parse_principal(parent, "parent")
        now = datetime.now(UTC)
        query = (
            select(TokenRow).where(TokenRow.principal_id == principal_id).order_by(TokenRow.create_time.desc())  # type: ignore[attr-defined]
        )
        with transaction(self.engine) as session:
            tokens = [Token.of(row, principal_name(kind, principal_id)) for row in session.exec(query)]
        if show_inactive:
            return tokens
        return [t for t in tokens if t.revoke_time is None and (t.expire_time is None or t.expire_time > now)]

    def revoke(self, name: str) -> Token:
        if "/tokens/" not in name:
            raise InvalidArgument(
                f"invalid token name {name!r}: expected users/{{user}}/tokens/{{token}} or "
                "serviceAccounts/{account}/tokens/{token} (`atelier iam tokens ls` lists them)",
                metadata={"field": "name", "value": name},
            )
        principal, _, token_id = name.rpartition("/tokens/")
        kind, principal_id = parse_principal(principal)
        validate_id("token", token_id)
        with transaction(self.engine) as session:
            row = session.get(TokenRow, token_id)
            if row is None or row.principal_id != principal_id:
                raise NotFound(f"{name} not found")
            if row.revoke_time is None:
                row.revoke_time = datetime.now(UTC)
                session.add(row)
            return Token.of(row, principal_name(kind, principal_id))

    def authenticate(self, secret: str) -> Authenticated:
        """The principal, token and project roles of a secret; UNAUTHENTICATED saying why it is refused."""
        token_id = _token_id(secret)
        now = datetime.now(UTC)
        with transaction(self.engine) as session:
            row = session.get(TokenRow, token_id) if token_id else None
            if row is None or not hmac.compare_digest(row.secret_hash, self._hash(secret)):
                raise Unauthenticated("the token is not valid (unknown or mistyped); run `atelier login` again")
            if row.revoke_time is not None:
                raise Unauthenticated(f"the token was revoked at {utc(row.revoke_time).isoformat()}")
            if row.expire_time is not None and utc(row.expire_time) <= now:
                raise Unauthenticated(f"the token expired at {utc(row.expire_time).isoformat()}")
            who = session.get(PrincipalRow, row.principal_id)
            if who is None or who.disabled:
                raise Unauthenticated(f"the token's principal {row.principal_id!r} is disabled")
            if row.last_use_time is None or now - utc(row.last_use_time) >= LAST_USE_RESOLUTION:
                row.last_use_time = now
                session.add(row)
            roles = {m.project: m.role for m in session.exec(select(MemberRow).where(MemberRow.principal_id == who.id))}
            principal = Principal.of(who)
            return Authenticated(principal, Token.of(row, principal.name), roles)


def _token_id(secret: str) -> str:
    if not secret.startswith(PREFIX):
        return ""
    token_id, _, rest = secret[len(PREFIX) :].partition("_")
    return token_id if rest and len(token_id) == 16 else ""
