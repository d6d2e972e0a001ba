"""Settings of the IAM service (`ATELIER_IAM_*`)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from atelier.runtime.settings import ServiceSettings


class IamSettings(ServiceSettings):
    """What the IAM service can be told, on top of what every service can."""

    model_config = SettingsConfigDict(env_prefix="ATELIER_IAM_", extra="ignore")

    token_key_file: str = Field(
        "",
        description="File holding the 32-byte key of the tokens' keyed hash; default $ATELIER_HOME/iam-token.key, "
        "created (mode 0600) on first start.",
    )
    bootstrap_admin: str = Field(
        "admin", description="User created as cluster admin when no principal exists yet ('' creates none)."
    )
    oidc_issuer: str = Field(
        "", description="Issuer URL of the lab's OpenID Connect provider; empty turns OIDC bearer tokens off."
    )
    oidc_audience: str = Field("atelier", description="The audience (`aud`) OIDC tokens must carry.")
    oidc_jwks_url: str = Field("", description="The issuer's keys (JWKS); default: from its discovery document.")
    oidc_claim: str = Field(
        "preferred_username", description="The claim naming the user (`email` uses its local part)."
    )
    oidc_create_users: bool = Field(True, description="Create unknown OIDC users (with no roles) on first sight.")
    service_tokens_file: str = Field(
        "",
        description="JSON {account: {secret, role}} of service accounts to keep with these tokens (what `atelier up "
        "--auth` hands its services); earlier tokens they were given this way are revoked.",
    )
    bootstrap_credentials_file: str = Field(
        "",
        description="Where the first admin's token is written (mode 0600); default $ATELIER_HOME/credentials.",
    )
