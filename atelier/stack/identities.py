"""Access control in the local stack (`atelier up --auth`).

Each service gets a token of its own service account (`svc-<name>`, cluster role service) by
environment; the secrets are made here and handed to the gateway's IAM service in a file readable by
the stack's owner only, which registers them (keeping only their keyed hashes) and revokes those of the
previous start. The first admin's token is written by the IAM service to `$ATELIER_HOME/credentials`.
Without `--auth` every service runs with `ATELIER_AUTH=off`, which they accept only on 127.0.0.1.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from atelier.runtime.auth import new_secret
from atelier.stack.addresses import run_dir
from atelier.stack.services import StackService


def service_tokens_file(home: Path) -> Path:
    """Where the services' secrets wait for the IAM service."""
    return run_dir(home) / "service-tokens.json"


def issue_service_tokens(home: Path, services: Sequence[StackService]) -> dict[str, str]:
    """A fresh secret per Atelier service of the stack, written (0600) for the IAM service to register."""
    secrets = {s.name: new_secret() for s in services if s.kind == "grpc"}
    path = service_tokens_file(home)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump({f"svc-{name}": {"secret": secret, "role": "service"} for name, secret in secrets.items()}, handle)
    return secrets


def auth_env(service: StackService, home: Path, tokens: Mapping[str, str] | None) -> dict[str, str]:
    """What a service's environment says about access control: off, or on with its own token."""
    if tokens is None:
        return {"ATELIER_AUTH": "off"}
    env = {"ATELIER_AUTH": "on"}
    if service.name in tokens:
        env["ATELIER_TOKEN"] = tokens[service.name]
    if service.kind == "gateway":
        env["ATELIER_IAM_SERVICE_TOKENS_FILE"] = str(service_tokens_file(home))
    return env
