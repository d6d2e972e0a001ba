"""OIDC bearer tokens: a JWT from the lab's identity provider, verified against the issuer's keys
(JWKS, found through the issuer's discovery document unless configured), becomes an Atelier user.

The user is named by a claim (`preferred_username` by default, or `email`'s local part); unknown
users are created on first sight with no roles (an admin still grants project roles), or refused
when creation is off. Project roles come from the IAM service's own membership table, as for tokens.
"""

from __future__ import annotations

import json
import re
import urllib.request
from dataclasses import dataclass
from datetime import UTC, datetime

import jwt

from atelier.errors import AlreadyExists, NotFound, Unauthenticated
from atelier.iam.v1 import resources_pb2
from gateway.iam.principals import Principal, Principals

Kind = resources_pb2.PrincipalKind
_ID = re.compile(r"[^a-z0-9._-]+")
ALGORITHMS = ["RS256", "RS384", "RS512", "ES256", "ES384", "PS256"]


def looks_like_jwt(token: str) -> bool:
    return token.count(".") == 2 and token.startswith("ey")


@dataclass(frozen=True)
class OidcUser:
    principal: Principal
    expires: datetime


class OidcVerifier:
    """Checks JWTs of one issuer for one audience."""

    def __init__(
        self,
        issuer: str,
        audience: str,
        principals: Principals,
        jwks_url: str = "",
        claim: str = "preferred_username",
        create_users: bool = True,
    ) -> None:
        self.issuer = issuer.rstrip("/")
        self.audience = audience
        self.principals = principals
        self.claim = claim
        self.create_users = create_users
        self._jwks_url = jwks_url
        self._keys: jwt.PyJWKClient | None = None

    def _client(self) -> jwt.PyJWKClient:
        if self._keys is None:
            url = self._jwks_url or _discover_jwks(self.issuer)
            self._keys = jwt.PyJWKClient(url, cache_keys=True, lifespan=300)
        return self._keys

    def verify(self, token: str) -> OidcUser:
        """The user a valid JWT stands for; UNAUTHENTICATED naming what is wrong with it."""
        try:
            key = self._client().get_signing_key_from_jwt(token)
            claims = jwt.decode(
                token,
                key.key,
                algorithms=ALGORITHMS,
                audience=self.audience,
                issuer=self.issuer,
                options={"require": ["exp", "iss", "aud", "sub"]},
            )
        except jwt.ExpiredSignatureError:
            raise Unauthenticated("the identity provider's token has expired; log in again") from None
        except jwt.PyJWKClientError as error:
            raise Unauthenticated(f"cannot verify the identity provider's token: {error}") from None
        except jwt.InvalidTokenError as error:
            raise Unauthenticated(f"the identity provider's token is not valid: {error}") from None
        user_id = self._user_id(claims)
        return OidcUser(self._principal(user_id), datetime.fromtimestamp(int(claims["exp"]), UTC))

    def _user_id(self, claims: dict[str, object]) -> str:
        value = str(claims.get(self.claim) or "")
        if self.claim == "email":
            value = value.split("@", 1)[0]
        user_id = _ID.sub("-", value.lower()).strip("-._")[:63]
        if not user_id:
            raise Unauthenticated(f"the identity provider's token has no usable {self.claim!r} claim")
        return user_id

    def _principal(self, user_id: str) -> Principal:
        try:
            found = self.principals.get(f"users/{user_id}")
        except NotFound:
            if not self.create_users:
                raise Unauthenticated(f"users/{user_id} is not an Atelier user; ask an admin to create it") from None
            try:
                found = self.principals.create(Kind.PRINCIPAL_KIND_USER, user_id, "from the identity provider")
            except AlreadyExists:
                found = self.principals.get(f"users/{user_id}")
        if found.disabled:
            raise Unauthenticated(f"users/{user_id} is disabled")
        return found


def _discover_jwks(issuer: str) -> str:
    """The `jwks_uri` of the issuer's OpenID discovery document."""
    url = f"{issuer}/.well-known/openid-configuration"
    try:
        with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 - the configured issuer
            document = json.loads(response.read())
    except (OSError, ValueError) as error:
        raise Unauthenticated(f"cannot read the identity provider's discovery document {url}: {error}") from None
    jwks = document.get("jwks_uri") if isinstance(document, dict) else None
    if not isinstance(jwks, str):
        raise Unauthenticated(f"{url} names no jwks_uri")
    return jwks
