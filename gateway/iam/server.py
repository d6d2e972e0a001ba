"""Bootstrap of the IAM service: settings, database, token key, the first admin; then serve.

It runs inside the gateway process (the gateway owns identities) as a service host of its own, so
it gets the runtime's health, metrics and access control like every other service; it checks
tokens against its own tables rather than over the network.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import secrets
from pathlib import Path

from atelier.client.credentials import credentials_path, write_credentials
from atelier.errors import InvalidArgument, NotFound
from atelier.iam.v1 import iam_service_pb2, iam_service_pb2_grpc, resources_pb2
from atelier.runtime.auth import CLUSTER_ROLE_NAMES, AuditRecord, Authorizer, Identity, IdentityCache
from atelier.runtime.database import create_engine, default_url, migrate
from atelier.runtime.server import BlockingRunner, GrpcService, ServiceHost, serve_main
from gateway.iam.audit import AuditEvent, AuditLog
from gateway.iam.identify import Identifier
from gateway.iam.oidc import OidcVerifier
from gateway.iam.principals import Principals
from gateway.iam.servicer import IamServicer
from gateway.iam.settings import IamSettings
from gateway.iam.tokens import Tokens

log = logging.getLogger(__name__)
MIGRATIONS = Path(__file__).parent / "migrations"
SERVICE_NAME = iam_service_pb2.DESCRIPTOR.services_by_name["IamService"].full_name
Kind = resources_pb2.PrincipalKind


def token_key(settings: IamSettings) -> bytes:
    """The 32-byte key of the tokens' keyed hash, created (mode 0600) on first start."""
    path = Path(settings.token_key_file) if settings.token_key_file else settings.home / "iam-token.key"
    if path.exists():
        return bytes.fromhex(path.read_text().strip())
    path.parent.mkdir(parents=True, exist_ok=True)
    key = secrets.token_bytes(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(key.hex())
    return key


def service_tokens(settings: IamSettings, principals: Principals, tokens: Tokens) -> None:
    """Keep the service accounts and tokens a local stack's starter made for its services."""
    if not settings.service_tokens_file:
        return
    try:
        wanted = json.loads(Path(settings.service_tokens_file).read_text())
    except (OSError, ValueError) as error:
        raise InvalidArgument(f"cannot read {settings.service_tokens_file}: {error}") from error
    for account, given in wanted.items():
        role = CLUSTER_ROLE_NAMES.get(given.get("role", "service"))
        if role is None:
            raise InvalidArgument(
                f"{settings.service_tokens_file}: {account} has an unknown role {given.get('role')!r}"
            )
        name = f"serviceAccounts/{account}"
        try:
            principals.get(name)
        except NotFound:
            principals.create(Kind.PRINCIPAL_KIND_SERVICE_ACCOUNT, account, "local stack service", [role])
        tokens.register(name, str(given["secret"]), "atelier up")


def bootstrap(settings: IamSettings, principals: Principals, tokens: Tokens) -> None:
    """On an empty directory, create the first cluster admin and write its token for the CLI."""
    service_tokens(settings, principals, tokens)
    if not settings.bootstrap_admin or principals.count(Kind.PRINCIPAL_KIND_USER):
        return
    admin = principals.create(
        Kind.PRINCIPAL_KIND_USER,
        settings.bootstrap_admin,
        "first administrator",
        [resources_pb2.ClusterRole.CLUSTER_ROLE_ADMIN],
    )
    _, secret = tokens.create(admin.name, "bootstrap")
    path = Path(settings.bootstrap_credentials_file) if settings.bootstrap_credentials_file else None
    path = path or credentials_path(settings.home)
    write_credentials(path, secret, admin.name)
    log.info("created the first admin %s; its token is in %s", admin.name, path)


class LocalAudit:
    """The IAM service's own writes go straight to its table, off the event loop."""

    def __init__(self, audit: AuditLog, runner: BlockingRunner) -> None:
        self.audit = audit
        self.runner = runner
        self._tasks: set[asyncio.Task[int]] = set()

    def __call__(self, record: AuditRecord) -> None:
        event = AuditEvent(
            record.time,
            record.principal,
            record.method,
            record.project,
            record.resource,
            record.peer,
            record.code,
            "iam",
        )
        task = asyncio.get_running_loop().create_task(self.runner(self.audit.write, [event]))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def drain(self) -> None:
        await asyncio.gather(*self._tasks, return_exceptions=True)


def build(settings: IamSettings) -> ServiceHost:
    """Wire the IAM service from its settings (migrating the database on the way)."""
    engine = create_engine(settings.database_url or default_url(settings.home, "iam"), settings.sqlite_synchronous)
    migrate(engine, MIGRATIONS, "alembic_version_iam")
    principals = Principals(engine)
    tokens = Tokens(engine, token_key(settings))
    audit = AuditLog(engine)
    bootstrap(settings, principals, tokens)
    oidc = (
        OidcVerifier(
            settings.oidc_issuer,
            settings.oidc_audience,
            principals,
            settings.oidc_jwks_url,
            settings.oidc_claim,
            settings.oidc_create_users,
        )
        if settings.oidc_issuer
        else None
    )
    identifier = Identifier(tokens, principals, oidc)
    runner = BlockingRunner(settings.workers)
    servicer = IamServicer(principals, tokens, identifier, audit, runner)

    async def authenticate(secret: str) -> Identity:
        return (await runner(identifier.identify, secret)).identity

    local_audit = LocalAudit(audit, runner)
    host = ServiceHost(
        name="iam",
        settings=settings,
        services=[
            GrpcService(
                SERVICE_NAME, lambda server: iam_service_pb2_grpc.add_IamServiceServicer_to_server(servicer, server)
            )
        ],
        authorizer=Authorizer(IdentityCache(authenticate, settings.auth_cache_seconds), audit=local_audit),
    )
    host.on_stop.append(local_audit.drain)
    host.on_stop.append(runner.shutdown)
    host.on_stop.append(engine.dispose)
    return host


def main() -> None:
    """`python -m gateway.iam`."""
    serve_main("iam", IamSettings, build)
