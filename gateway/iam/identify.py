"""Who a secret belongs to: an Atelier token, or (when configured) an OIDC bearer token."""

from __future__ import annotations

from dataclasses import dataclass

from atelier.errors import Unauthenticated
from atelier.runtime.auth import TOKEN_PREFIX, Identity
from gateway.iam.oidc import OidcVerifier, looks_like_jwt
from gateway.iam.principals import Principals
from gateway.iam.tokens import Tokens


@dataclass(frozen=True)
class Identified:
    identity: Identity
    token: str
    """The token's resource name, or `oidc` for an identity provider's token."""


class Identifier:
    def __init__(self, tokens: Tokens, principals: Principals, oidc: OidcVerifier | None = None) -> None:
        self.tokens = tokens
        self.principals = principals
        self.oidc = oidc

    def identify(self, secret: str) -> Identified:
        if self.oidc is not None and not secret.startswith(TOKEN_PREFIX) and looks_like_jwt(secret):
            user = self.oidc.verify(secret)
            identity = Identity(
                principal=user.principal.name,
                cluster_roles=frozenset(user.principal.cluster_roles),
                project_roles=self.principals.roles_of(user.principal.id),
                expires=user.expires.timestamp(),
            )
            return Identified(identity, "oidc")
        if looks_like_jwt(secret):
            raise Unauthenticated("OIDC bearer tokens are not accepted here (no identity provider is configured)")
        found = self.tokens.authenticate(secret)
        expires = found.token.expire_time
        identity = Identity(
            principal=found.principal.name,
            cluster_roles=frozenset(found.principal.cluster_roles),
            project_roles=found.project_roles,
            scope_project=found.token.scope_project,
            scope_role=found.token.scope_role,
            expires=expires.timestamp() if expires else 0.0,
        )
        return Identified(identity, found.token.name)
