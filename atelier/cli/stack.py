"""`atelier up`, `atelier down` and `atelier status`: the one-machine stack in the current home."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from atelier.client.credentials import credentials_path
from atelier.runtime.home import atelier_home
from atelier.stack import local, prometheus
from atelier.stack.local import Health, ServiceStatus
from atelier.stack.services import DEFAULT_BASE_PORT, PROMETHEUS, SERVICES

_HEALTH_STYLES = {Health.SERVING: "green", Health.NOT_SERVING: "yellow", Health.UNREACHABLE: "red"}


def register(app: typer.Typer) -> None:
    """Add the stack commands to the top level of `app`."""
    app.command("up")(up)
    app.command("down")(down)
    app.command("status")(status)


def up(
    detach: Annotated[
        bool, typer.Option("--detach", "-d", help="Return once every service is serving; stop with `down`.")
    ] = False,
    base_port: Annotated[
        int,
        typer.Option(
            "--base-port", min=0, max=65535, help="Port of the first service; 0 gives each an ephemeral port."
        ),
    ] = DEFAULT_BASE_PORT,
    timeout: Annotated[
        float, typer.Option("--timeout", min=0.1, help="Seconds to wait for every service to be serving.")
    ] = 60.0,
    with_prometheus: Annotated[
        bool, typer.Option("--with-prometheus", help="Also start Prometheus, scraping every service.")
    ] = False,
    auth: Annotated[
        bool,
        typer.Option(
            "--auth",
            help="Access control on: every call needs a token (the first admin's is written to "
            "$ATELIER_HOME/credentials).",
        ),
    ] = False,
) -> None:
    """Start the local stack, one process per service, and wait until every service is serving."""
    console = Console(highlight=False)
    services = (*SERVICES, PROMETHEUS) if with_prometheus else SERVICES
    if with_prometheus:
        prometheus.binary()  # refuse before starting anything when it is not installed

    def ready(statuses: list[ServiceStatus]) -> None:
        for service in statuses:
            where = f"http://{service.address}" if service.name == PROMETHEUS.name else service.address
            console.print(Text.assemble(("✓", "green"), f" {service.name:<12} {where}"))
        if auth:
            console.print(
                f"access control on: the admin's token is in {credentials_path()}; add people with "
                "`atelier iam users create` and `atelier iam members add`"
            )
        else:
            console.print(
                "access control off (ATELIER_AUTH=off, allowed because the stack listens on 127.0.0.1 only): "
                "anyone on this machine can call it; `atelier up --auth` turns it on"
            )
        if detach:
            console.print(f"stack running in {atelier_home()}; stop it with `atelier down`")
        else:
            console.print("stack running; press Ctrl-C to stop it")

    local.up(
        atelier_home(),
        base_port=base_port,
        services=services,
        detach=detach,
        timeout=timeout,
        on_ready=ready,
        auth=auth,
    )
    if not detach:
        console.print("stack stopped")


def down() -> None:
    """Stop the local stack: SIGTERM each service, SIGKILL those still running after a grace period."""
    home = atelier_home()
    stopped = local.down(home)
    console = Console(highlight=False)
    if not stopped:
        console.print(f"no stack running in {home}")
    for name, pid in stopped.items():
        console.print(f"stopped {name} (pid {pid})")


def status(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """Show each service of the local stack: address, metrics endpoint, pid and health."""
    home = atelier_home()
    statuses = local.status(home)
    if as_json:
        content = {"home": str(home), "services": [service.to_json() for service in statuses]}
        typer.echo(json.dumps(content, indent=2))
        return
    Console(markup=False).print(_table(statuses))


def _table(statuses: list[ServiceStatus]) -> Table:
    """The statuses as a rich table."""
    table = Table("service", "address", "metrics", "pid", "health", title=Text(f"stack in {atelier_home()}"))
    for service in statuses:
        pid = Text("-" if service.pid is None else str(service.pid), style="" if service.alive else "dim")
        if service.pid is not None and not service.alive:
            pid.append(" (gone)")
        table.add_row(
            service.name,
            service.address or "-",
            service.metrics or "-",
            pid,
            Text(service.health.value, style=_HEALTH_STYLES[service.health]),
        )
    return table
