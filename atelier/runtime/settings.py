"""Settings every Atelier service shares, read from `ATELIER_<SERVICE>_*` environment variables.

A service subclasses `ServiceSettings`, sets its own `env_prefix` and adds its fields. Settings are
built once in the service's `main()` and passed down; nothing reads them from module globals.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TypeVar

from pydantic import AliasChoices, Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from atelier.runtime.home import atelier_home

__all__ = ["ServiceSettings", "atelier_home", "load_settings"]

S = TypeVar("S", bound=BaseSettings)


def load_settings(settings_type: type[S], process: str) -> S:
    """`settings_type` read from the environment. A value it cannot take ends the process (status 2) with
    one line naming each variable, the value given and what is allowed, rather than a traceback."""
    try:
        return settings_type()
    except ValidationError as error:
        prefix = str(settings_type.model_config.get("env_prefix", ""))
        problems = []
        for problem in error.errors():
            field = str(problem["loc"][0]) if problem["loc"] else ""
            variable = field if field.upper().startswith("ATELIER_") else prefix + field
            problems.append(f"{variable.upper()}={problem.get('input')!r}: {problem['msg']}")
        print(f"{process} cannot start: {'; '.join(problems)}", file=sys.stderr)
        raise SystemExit(2) from None


class ServiceSettings(BaseSettings):
    """What every gRPC service can be told."""

    model_config = SettingsConfigDict(env_prefix="ATELIER_", extra="ignore")

    host: str = Field("127.0.0.1", description="Interface to listen on.")
    port: int = Field(0, ge=0, le=65535, description="Port to listen on; 0 picks a free one.")
    metrics_port: int = Field(
        0, ge=-1, le=65535, description="Port of the Prometheus /metrics endpoint; 0 picks a free one, -1 turns it off."
    )
    max_message_bytes: int = Field(
        8 * 1024 * 1024, ge=1024, description="Largest request or response message accepted."
    )
    shutdown_grace_seconds: float = Field(
        10.0, ge=0, description="How long in-flight calls may run after SIGTERM before they are cancelled."
    )
    database_url: str = Field("", description="SQLAlchemy URL; empty means a SQLite file under $ATELIER_HOME.")
    sqlite_synchronous: str = Field(
        "NORMAL",
        pattern="^(NORMAL|FULL)$",
        description="SQLite durability: NORMAL survives a crashed process, FULL also a power cut (slower).",
    )
    home: Path = Field(default_factory=atelier_home, description="State directory of the local stack.")
    log_level: str = Field("INFO", description="Python logging level.")
    log_format: str = Field("json", pattern="^(json|text)$", description="`json` or `text` log lines.")
    workers: int = Field(8, ge=1, description="Threads for blocking work (database, object store).")
    address_file: Path | None = Field(
        None, description="When set, the bound address is written to this file once the server is serving."
    )
    auth: str = Field(
        "auto",
        pattern="^(on|off|auto)$",
        validation_alias=AliasChoices("ATELIER_AUTH", "auth"),
        description="`on`: every call needs a token the IAM service accepts; `off` (only on 127.0.0.1): none do; "
        "`auto`: on unless the service listens on 127.0.0.1 only.",
    )
    iam_address: str = Field(
        "",
        validation_alias=AliasChoices("ATELIER_IAM_ADDRESS", "iam_address"),
        description="The IAM service (`host:port`) that checks tokens; default: the local stack's gateway.",
    )
    token: str = Field(
        "",
        validation_alias=AliasChoices("ATELIER_TOKEN", "token"),
        description="The service's own token (a service account with the service cluster role), for the audit "
        "log and calls made on no caller's behalf.",
        repr=False,
    )
    auth_cache_seconds: float = Field(
        5.0,
        ge=0,
        validation_alias=AliasChoices("ATELIER_AUTH_CACHE_SECONDS", "auth_cache_seconds"),
        description="How long a checked token is trusted before it is checked again (a revoked token "
        "stops working within this time).",
    )
