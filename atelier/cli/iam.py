"""`atelier login|logout|whoami` and `atelier iam ...`: identities, tokens, project roles, audit log."""

from __future__ import annotations

import sys
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from atelier.cli.limits import INT32_MAX, seconds
from atelier.cli.output import console, emit
from atelier.client.credentials import configured_token, credentials_path, remove_credentials, write_credentials
from atelier.client.iam import IamClient
from atelier.errors import InvalidArgument, Unauthenticated
from atelier.iam.v1 import resources_pb2 as res
from atelier.runtime.auth import CLUSTER_ROLE_NAMES, ROLE_NAMES
from atelier.stack.addresses import service_address

iam = typer.Typer(help="Users, service accounts, tokens, project roles and the audit log.", no_args_is_help=True)
users = typer.Typer(help="People.", no_args_is_help=True)
accounts = typer.Typer(help="Robot accounts (CI, agents, services).", no_args_is_help=True)
tokens = typer.Typer(help="API tokens.", no_args_is_help=True)
members = typer.Typer(help="Who may do what in a project.", no_args_is_help=True)
iam.add_typer(users, name="users")
iam.add_typer(accounts, name="service-accounts")
iam.add_typer(tokens, name="tokens")
iam.add_typer(members, name="members")

JsonOption = Annotated[bool, typer.Option("--json", help="Print the result as JSON.")]


def client() -> IamClient:
    return IamClient.at(service_address("iam"))


def role_of(text: str) -> int:
    if text not in ROLE_NAMES:
        raise InvalidArgument(f"--role {text!r} is not one of {', '.join(ROLE_NAMES)}")
    return ROLE_NAMES[text]


def cluster_roles_of(texts: list[str]) -> list[int]:
    unknown = [t for t in texts if t not in CLUSTER_ROLE_NAMES]
    if unknown:
        raise InvalidArgument(f"--cluster-role {unknown[0]!r} is not one of {', '.join(CLUSTER_ROLE_NAMES)}")
    return [CLUSTER_ROLE_NAMES[t] for t in texts]


def principal_of(text: str) -> str:
    """`alice` means `users/alice`; full names pass through."""
    return text if "/" in text else f"users/{text}"


def parse_expiry(text: str) -> datetime | None:
    """`30d`, `12h`, `never`."""
    if text == "never":
        return None
    units = {"d": 86_400, "h": 3_600, "m": 60}
    if not (text[:-1].isdigit() and text[-1:] in units and int(text[:-1]) > 0):
        raise InvalidArgument(f"--expires {text!r}: use a duration such as 90d, 12h or 30m, or never")
    return datetime.now(UTC) + timedelta(seconds=seconds(int(text[:-1]) * units[text[-1]], "--expires", text))


def _cluster_words(roles: Iterable[int]) -> str:
    return ", ".join(res.ClusterRole.Name(r).removeprefix("CLUSTER_ROLE_").lower() for r in roles)  # type: ignore[arg-type]


def _role_word(role: int) -> str:
    return res.Role.Name(role).removeprefix("ROLE_").lower()  # type: ignore[arg-type]


def login(
    token: Annotated[str, typer.Option("--token", help="The token; read from standard input when omitted.")] = "",
    as_json: JsonOption = False,
) -> None:
    """Store a token for the CLI and SDK (mode 0600) after checking it with the gateway."""
    secret = token.strip() or sys.stdin.readline().strip()
    if not secret:
        raise InvalidArgument("no token given: pass --token or pipe one in (`atelier iam tokens create` makes one)")
    identity = client().authenticate(secret)
    path = credentials_path()
    write_credentials(path, secret, identity.principal)
    emit(as_json, identity, lambda: console.print(f"logged in as {identity.principal} (token stored in {path})"))


def logout() -> None:
    """Forget the stored token."""
    path = credentials_path()
    if remove_credentials(path):
        console.print(f"logged out ({path} removed)")
    else:
        console.print(f"not logged in ({path} does not exist)")


def deployment_secrets(
    directory: Annotated[Path, typer.Argument(help="Where to write atelier.env and service-tokens.json.")],
) -> None:
    """Make the secrets of a deployment of deploy/ (Compose or Kubernetes): each service's token, the node
    agents', the database's and object store's passwords (see deploy/README.md)."""
    from atelier.stack.identities import write_deployment_secrets

    for path in write_deployment_secrets(directory):
        console.print(f"wrote {path} (mode 0600)")


def whoami(as_json: JsonOption = False) -> None:
    """Who the stored token (or ATELIER_TOKEN) belongs to, and its roles."""
    secret = configured_token()
    if not secret:
        raise Unauthenticated("not logged in: run `atelier login` or set ATELIER_TOKEN")
    identity = client().authenticate(secret)

    def render() -> None:
        roles = _cluster_words(identity.cluster_roles)
        console.print(f"{identity.principal}" + (f" (cluster: {roles})" if roles else ""))
        for project, role in sorted(identity.project_roles.items()):
            console.print(f"  {project}: {_role_word(role)}")
        if identity.scope_project:
            console.print(f"  token scoped to {identity.scope_project} as {_role_word(identity.scope_role)}")

    emit(as_json, identity, render)


def _principals_table(found: list[res.Principal]) -> None:
    table = Table("name", "display name", "cluster roles", "disabled", box=None)
    for p in found:
        roles = _cluster_words(p.cluster_roles)
        table.add_row(p.name, p.display_name, roles, "yes" if p.disabled else "")
    console.print(table)


@users.command("create")
def create_user(
    user_id: Annotated[str, typer.Argument(help="The user id, e.g. alice.")],
    display_name: Annotated[str, typer.Option("--display-name", help="Full name.")] = "",
    cluster_role: Annotated[list[str], typer.Option("--cluster-role", help="admin, operator.")] = [],  # noqa: B006
    as_json: JsonOption = False,
) -> None:
    """Create a user (cluster admins)."""
    created = client().create_user(user_id, display_name, cluster_roles_of(cluster_role))
    emit(as_json, created, lambda: console.print(f"created {created.name}"))


@users.command("ls")
def list_users(as_json: JsonOption = False) -> None:
    """Users and service accounts."""
    found = list(client().list_principals())
    emit(as_json, found, lambda: _principals_table(found))


@accounts.command("create")
def create_account(
    account_id: Annotated[str, typer.Argument(help="The account id, e.g. ci-bot.")],
    cluster_role: Annotated[list[str], typer.Option("--cluster-role", help="agent, service, operator.")] = [],  # noqa: B006
    display_name: Annotated[str, typer.Option("--display-name")] = "",
    as_json: JsonOption = False,
) -> None:
    """Create a service account (cluster admins)."""
    created = client().create_service_account(account_id, display_name, cluster_roles_of(cluster_role))
    emit(as_json, created, lambda: console.print(f"created {created.name}"))


@tokens.command("create")
def create_token(
    principal: Annotated[str, typer.Argument(help="Whose: alice, users/alice or serviceAccounts/ci.")],
    name: Annotated[str, typer.Option("--name", help="What it is for.")] = "",
    expires: Annotated[
        str | None,
        typer.Option("--expires", help="90d, 12h, 30m or never (default 90d; 30d, the most, with --project)."),
    ] = None,
    project: Annotated[str, typer.Option("--project", help="Limit the token to one project.")] = "",
    role: Annotated[
        str | None, typer.Option("--role", help="With --project: the most it may do (default member).")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Create a token; its secret is printed once."""
    if role is not None and not project:
        raise InvalidArgument("--role limits a project-scoped token: give --project too")
    scope_role = role_of(role or "member") if project else 0
    lifetime = expires or ("30d" if project else "90d")
    expiry = parse_expiry(lifetime)
    if project and (expiry is None or expiry - datetime.now(UTC) > timedelta(days=30, minutes=1)):
        raise InvalidArgument(f"--expires {lifetime}: a project-scoped token lives at most 30 days (30d)")
    created = client().create_token(
        principal_of(principal), name, expiry, f"projects/{project}" if project else "", scope_role
    )

    def render() -> None:
        console.print(f"created {created.token.name}; the secret below is shown once:")
        print(created.secret)

    emit(as_json, created, render)


@tokens.command("ls")
def list_tokens(
    principal: Annotated[str, typer.Argument(help="Whose tokens.")],
    all_tokens: Annotated[bool, typer.Option("--all", help="Also revoked and expired ones.")] = False,
    as_json: JsonOption = False,
) -> None:
    """A principal's tokens (never their secrets)."""
    found = client().list_tokens(principal_of(principal), all_tokens)

    def render() -> None:
        table = Table("name", "for", "expires", "last used", "revoked", "scope", box=None)
        for t in found:

            def when(field: str, token: res.Token = t) -> str:
                stamp = getattr(token, field)
                return stamp.ToDatetime(UTC).strftime("%Y-%m-%d %H:%M") if stamp.seconds else ""

            table.add_row(
                t.name, t.display_name, when("expire_time"), when("last_use_time"), when("revoke_time"), t.scope_project
            )
        console.print(table)

    emit(as_json, found, render)


@tokens.command("revoke")
def revoke_token(
    name: Annotated[str, typer.Argument(help="users/alice/tokens/ID")], as_json: JsonOption = False
) -> None:
    """Revoke a token at once."""
    revoked = client().revoke_token(name)
    emit(as_json, revoked, lambda: console.print(f"revoked {revoked.name}"))


@members.command("add")
def add_member(
    project: Annotated[str, typer.Argument()],
    principal: Annotated[str, typer.Argument(help="alice, users/alice or serviceAccounts/ci.")],
    role: Annotated[str, typer.Option("--role", help="viewer, member or admin.")] = "member",
    as_json: JsonOption = False,
) -> None:
    """Give a principal a role in a project (project admins)."""
    added = client().add_member(project, principal_of(principal), role_of(role))
    emit(as_json, added, lambda: console.print(f"{added.principal} is {role} of project {project}"))


@members.command("set")
def set_member(
    project: Annotated[str, typer.Argument()],
    member: Annotated[str, typer.Argument(help="The member id (the principal's id).")],
    role: Annotated[str, typer.Option("--role", help="viewer, member or admin.")],
    as_json: JsonOption = False,
) -> None:
    """Change a member's role."""
    changed = client().set_role(project, member.rsplit("/", 1)[-1], role_of(role))
    emit(as_json, changed, lambda: console.print(f"{changed.principal} is {role} of project {project}"))


@members.command("rm")
def remove_member(project: Annotated[str, typer.Argument()], member: Annotated[str, typer.Argument()]) -> None:
    """Remove a member from a project."""
    client().remove_member(project, member.rsplit("/", 1)[-1])
    console.print(f"removed {member} from project {project}")


@members.command("ls")
def list_members(project: Annotated[str, typer.Argument()], as_json: JsonOption = False) -> None:
    """A project's members and roles."""
    found = client().list_members(project)

    def render() -> None:
        table = Table("principal", "role", "since", box=None)
        for m in found:
            table.add_row(m.principal, _role_word(m.role), m.update_time.ToDatetime(UTC).strftime("%Y-%m-%d %H:%M"))
        console.print(table)

    emit(as_json, found, render)


@iam.command("audit")
def audit(
    project: Annotated[str, typer.Option("--project", "-p", help="One project (its admins); default all.")] = "",
    principal: Annotated[str, typer.Option("--principal", help="Only calls by this principal.")] = "",
    limit: Annotated[int, typer.Option("--limit", min=1, max=INT32_MAX, help="At most this many, newest first.")] = 50,
    as_json: JsonOption = False,
) -> None:
    """The audit log of writes: who did what, when, from where, and how it ended."""
    found = client().audit_events(project, principal_of(principal) if principal else "", limit)

    def render() -> None:
        table = Table("time", "principal", "call", "resource", "result", "from", box=None)
        for e in found:
            call = f"{e.service} {e.method.rsplit('/', 1)[-1]}"
            table.add_row(
                e.time.ToDatetime(UTC).strftime("%Y-%m-%d %H:%M:%S"), e.principal, call, e.resource, e.code, e.peer
            )
        console.print(table)

    emit(as_json, found, render)
