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
import secrets
from collections.abc import Mapping, Sequence
from pathlib import Path

from atelier.errors import AlreadyExists
from atelier.runtime.auth import new_secret
from atelier.stack.addresses import run_dir
from atelier.stack.services import SERVICES, StackService, env_var

AGENTS_ACCOUNT = "node-agents"
"""The service account (cluster role agent) a deployment's node agents share."""
DEPLOYMENT_ENV = "atelier.env"
DEPLOYMENT_TOKENS = "service-tokens.json"


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


def write_deployment_secrets(directory: Path) -> list[Path]:
    """Fresh secrets for a deployment of `deploy/` (Compose or Kubernetes), in two files (mode 0600):

    - `atelier.env`: each service's token (`ATELIER_<SERVICE>_TOKEN`), the node agents' (`ATELIER_AGENT_TOKEN`)
      and the passwords of PostgreSQL and MinIO, as `NAME=value` lines (Compose's `--env-file`, or
      `kubectl create secret generic --from-env-file`);
    - `service-tokens.json`: the same tokens for the IAM service (`ATELIER_IAM_SERVICE_TOKENS_FILE`), which
      keeps each as the token of its service account (`svc-<service>`, cluster role service; `node-agents`,
      cluster role agent) at every start.

    Refuses to replace files already there: new secrets lock out whatever still holds the old ones."""
    env_path, tokens_path = directory / DEPLOYMENT_ENV, directory / DEPLOYMENT_TOKENS
    for path in (env_path, tokens_path):
        if path.exists():
            raise AlreadyExists(
                f"{path} exists: remove it first to make new secrets (what uses the old ones stops working)"
            )
    services = {s.name: new_secret() for s in SERVICES if s.kind == "grpc"}
    agents = new_secret()
    lines = [f"{env_var(name, 'token')}={secret}" for name, secret in services.items()]
    lines += [
        f"{env_var('agent', 'token')}={agents}",
        f"POSTGRES_PASSWORD={secrets.token_urlsafe(24)}",
        f"MINIO_ROOT_PASSWORD={secrets.token_urlsafe(24)}",
    ]
    accounts = {f"svc-{name}": {"secret": secret, "role": "service"} for name, secret in services.items()}
    accounts[AGENTS_ACCOUNT] = {"secret": agents, "role": "agent"}
    directory.mkdir(parents=True, exist_ok=True)
    _write_private(env_path, "\n".join(lines) + "\n")
    _write_private(tokens_path, json.dumps(accounts, indent=2) + "\n")
    return [env_path, tokens_path]


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
