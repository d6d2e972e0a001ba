"""The `atelier` entry point: global options, the command tree, and one way of reporting errors.

Every `AtelierError` a command raises, in any sub-app, ends as one red `error: <message>` line on
stderr and exit code 1 (lines after the first, such as a service's log tail, follow it dimmed).
"""

from __future__ import annotations

import itertools
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.text import Text

from atelier.cli import data as data_cli
from atelier.cli import iam as iam_cli
from atelier.cli import jobs as jobs_cli
from atelier.cli import registry as registry_cli
from atelier.cli import serve as serve_cli
from atelier.cli import sim as sim_cli
from atelier.cli import stack as stack_cli
from atelier.cli import usage as usage_cli
from atelier.errors import AtelierError
from atelier.runtime.home import atelier_home

app = typer.Typer(
    name="atelier",
    help="Atelier: data versioning, scheduling, serving and monitoring for research labs.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def _options(
    home: Annotated[
        Path | None,
        typer.Option(
            "--home",
            envvar="ATELIER_HOME",
            show_default="./.atelier",
            help="State directory of the local stack.",
        ),
    ] = None,
) -> None:
    """Atelier: data versioning, scheduling, serving and monitoring for research labs."""
    os.environ["ATELIER_HOME"] = str((home or atelier_home()).absolute())


stack_cli.register(app)
app.add_typer(data_cli.app, name="data")
app.add_typer(registry_cli.experiments, name="experiments")
app.add_typer(registry_cli.runs, name="runs")
app.add_typer(registry_cli.models, name="models")
app.add_typer(jobs_cli.jobs, name="jobs")
app.add_typer(serve_cli.serve, name="serve")
app.command("cluster")(jobs_cli.cluster)
app.command("agent")(jobs_cli.agent)
app.command("sim")(sim_cli.sim)
app.command("usage")(usage_cli.usage)
app.add_typer(iam_cli.iam, name="iam")
app.command("login")(iam_cli.login)
app.command("logout")(iam_cli.logout)
app.command("whoami")(iam_cli.whoami)


def print_error(error: AtelierError) -> None:
    """Print an error as one red `error:` line on stderr, any further lines of its message dimmed."""
    console = Console(stderr=True, highlight=False, soft_wrap=True)
    first, *rest = str(error).splitlines() or [""]
    console.print(Text(f"error: {first}", style="red"))
    for line in rest:
        console.print(Text(line, style="dim"))


@contextmanager
def traced_command(argv: list[str]) -> Iterator[None]:
    """With `OTEL_EXPORTER_OTLP_ENDPOINT` set, run the command in a root span (`atelier data push`) whose
    trace every call it makes continues, and flush the spans before the process ends."""
    if not os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"):
        yield
        return
    from opentelemetry import trace

    from atelier.runtime.tracing import configure_tracing, shutdown_tracing

    configure_tracing("atelier-cli")
    words = list(itertools.takewhile(lambda word: word.isidentifier() or "-" in word.strip("-"), argv))[:2]
    ended: SystemExit | None = None
    try:
        with trace.get_tracer("atelier.cli").start_as_current_span(" ".join(["atelier", *words])) as span:
            try:
                yield
            except SystemExit as exit_:  # typer ends every command this way; only a non-zero code failed
                ended = exit_
                if exit_.code not in (None, 0):
                    span.set_status(trace.Status(trace.StatusCode.ERROR, f"exit code {exit_.code}"))
    finally:
        shutdown_tracing()
    if ended is not None:
        raise ended


def main() -> None:
    """Run the `atelier` command line."""
    with traced_command(sys.argv[1:]):
        try:
            app(prog_name="atelier")
        except AtelierError as error:
            print_error(error)
            sys.exit(1)


if __name__ == "__main__":
    main()
