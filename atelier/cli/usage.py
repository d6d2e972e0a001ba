"""`atelier usage`: GPU-hours and energy by job, project or user, from the monitor's accounting."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Annotated

import typer
from rich.table import Table

from atelier.cli.limits import seconds
from atelier.cli.output import console, emit
from atelier.client.channel import connect
from atelier.client.monitor import MonitorClient
from atelier.errors import AtelierError, InvalidArgument
from atelier.monitor.v1 import monitor_service_pb2 as pb
from atelier.registry.v1 import resources_pb2 as registry_pb
from atelier.stack.addresses import service_address

LOOKUP_TIMEOUT_SECONDS = 3.0
"""How long `runs show` and `models show` wait for the monitor before showing the run without its cost."""
GROUPINGS = {"job": pb.USAGE_GROUPING_JOB, "project": pb.USAGE_GROUPING_PROJECT, "user": pb.USAGE_GROUPING_USER}


def parse_moment(text: str, option: str) -> datetime:
    """`2026-12-01`, `2026-12-01T09:00`, or a duration back from now: `7d`, `12h`, `30m`."""
    units = {"d": 86_400, "h": 3_600, "m": 60}
    if text[:-1].isdigit() and text[-1:] in units:
        return datetime.now(UTC) - timedelta(seconds=seconds(int(text[:-1]) * units[text[-1]], option, text))
    try:
        moment = (
            datetime.fromisoformat(text)
            if "T" in text or " " in text
            else datetime.combine(date.fromisoformat(text), datetime.min.time())
        )
        # In UTC, as the request carries it: an offset can carry a time past the calendar's ends.
        return moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)
    except (ValueError, OverflowError):
        raise InvalidArgument(
            f"{option} {text!r} is not a date (2026-12-01), a time (2026-12-01T09:00) or a duration (7d, 12h, 30m)"
        ) from None


def usage(
    project: Annotated[str, typer.Option("--project", "-p", help="Project; default: every project.")] = "-",
    since: Annotated[str, typer.Option("--since", help="From: a date, a time, or 7d / 12h back.")] = "",
    until: Annotated[str, typer.Option("--until", help="Up to (exclusive): a date or a time.")] = "",
    by: Annotated[str, typer.Option("--by", help="Rows per job, project or user.")] = "job",
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """GPU-hours and energy used, by job (default), project or user."""
    if by not in GROUPINGS:
        raise InvalidArgument(f"--by {by!r} is not one of {', '.join(GROUPINGS)}")
    start = parse_moment(since, "--since") if since else None
    end = parse_moment(until, "--until") if until else None
    if start is not None and end is not None and end <= start:
        raise InvalidArgument(f"--until {until} is not after --since {since}: nothing lies between them")
    client = MonitorClient.at(service_address("monitor"))
    found = client.query_usage(project, start, end, GROUPINGS[by])

    def render() -> None:
        columns = {"job": ("job", "user"), "project": ("project",), "user": ("project", "user")}[by]
        table = Table(*columns, "GPU-hours", "energy kWh", "cards", "last used", box=None)
        for row in [*found.rows, found.total]:
            last = row.last_time.ToDatetime(UTC).strftime("%Y-%m-%d %H:%M") if row.last_time.seconds else ""
            mark = " (simulated)" if row.simulated else ""
            named = (
                [getattr(row, c) for c in columns] if row is not found.total else ["total", *[""] * (len(columns) - 1)]
            )
            table.add_row(*named, f"{row.gpu_hours:.2f}", f"{row.energy_kwh:.3f}{mark}", str(row.cards), last)
        console.print(table)

    emit(as_json, found, render)


def job_usage(job: str) -> pb.UsageRow | None:
    """The GPU-hours and energy the monitor has for one job; None when it has none or is not reachable
    (a run shown without its cost is better than no run)."""
    if not job:
        return None
    try:
        address = service_address("monitor")
        client = MonitorClient(connect(address), timeout=LOOKUP_TIMEOUT_SECONDS, address=address)
        project = job.split("/")[1] if job.startswith("projects/") else "-"
        found = client.query_usage(project, group_by=pb.USAGE_GROUPING_JOB)
    except AtelierError:
        return None
    return next((row for row in found.rows if row.job == job), None)


def describe(row: pb.UsageRow) -> str:
    simulated = " (simulated cards)" if row.simulated else ""
    return f"{row.gpu_hours:.3f} GPU-hours, {row.energy_kwh:.3f} kWh on {row.cards} card(s){simulated}"


def recorded(usage: registry_pb.ResourceUsage) -> pb.UsageRow:
    """The usage the registry recorded on a run or version, in the figures `atelier usage` prints."""
    return pb.UsageRow(
        gpu_hours=usage.gpu_seconds / 3600.0,
        energy_kwh=usage.energy_joules / 3.6e6,
        simulated=usage.simulated,
        last_time=usage.update_time,
    )


def describe_recorded(usage: registry_pb.ResourceUsage) -> str:
    row = recorded(usage)
    simulated = " (simulated cards)" if row.simulated else ""
    when = usage.update_time.ToDatetime(UTC).strftime("%Y-%m-%d %H:%M")
    return f"{row.gpu_hours:.3f} GPU-hours, {row.energy_kwh:.3f} kWh{simulated} (recorded {when} UTC)"
