"""The `atelier` entry point: global options, the command tree, and one way of reporting errors.

Every `AtelierError` a command raises, in any sub-app, ends as one red `error: <message>` line on
stderr and exit code 1 (lines after the first, such as a service's log tail, follow it dimmed).
"""

from __future__ import annotations

import atexit
import itertools
import os
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.text import Text

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


# The command tree, in parts that each import their own modules: a command builds only its own part
# (`atelier data push` does not import the scheduler's, the registry's or the serving code).


def _stack(app: typer.Typer) -> None:
    from atelier.cli import stack as stack_cli

    stack_cli.register(app)


def _data(app: typer.Typer) -> None:
    from atelier.cli import data as data_cli

    app.add_typer(data_cli.app, name="data")


def _registry(app: typer.Typer) -> None:
    from atelier.cli import registry as registry_cli

    app.add_typer(registry_cli.experiments, name="experiments")
    app.add_typer(registry_cli.runs, name="runs")
    app.add_typer(registry_cli.models, name="models")


def _jobs(app: typer.Typer) -> None:
    from atelier.cli import jobs as jobs_cli

    app.add_typer(jobs_cli.jobs, name="jobs")
    app.command("cluster")(jobs_cli.cluster)
    app.command("agent")(jobs_cli.agent)


def _serve(app: typer.Typer) -> None:
    from atelier.cli import serve as serve_cli

    app.add_typer(serve_cli.serve, name="serve")


def _sim(app: typer.Typer) -> None:
    from atelier.cli import sim as sim_cli

    app.command("sim")(sim_cli.sim)


def _usage(app: typer.Typer) -> None:
    from atelier.cli import usage as usage_cli

    app.command("usage")(usage_cli.usage)


def _iam(app: typer.Typer) -> None:
    from atelier.cli import iam as iam_cli

    app.add_typer(iam_cli.iam, name="iam")
    app.command("login")(iam_cli.login)
    app.command("logout")(iam_cli.logout)
    app.command("whoami")(iam_cli.whoami)
    iam_cli.iam.command("deployment-secrets")(iam_cli.deployment_secrets)


_PARTS: list[tuple[tuple[str, ...], Callable[[typer.Typer], None]]] = [
    (("up", "down", "status"), _stack),
    (("data",), _data),
    (("experiments", "runs", "models"), _registry),
    (("jobs", "cluster", "agent"), _jobs),
    (("serve",), _serve),
    (("sim",), _sim),
    (("usage",), _usage),
    (("iam", "login", "logout", "whoami"), _iam),
]


def command_word(argv: list[str]) -> str | None:
    """The command `argv` (without the program) names: its first word that is neither an option nor
    the value of `--home`."""
    words = iter(argv)
    for word in words:
        if word == "--home":
            next(words, None)
        elif not word.startswith("-"):
            return word
    return None


def build(command: str | None = None) -> typer.Typer:
    """`app` with the part of the command tree that has `command` (the whole tree for any other
    word, None included: help lists every command, and an unknown one is reported as usual)."""
    known = any(command in words for words, _ in _PARTS)
    for words, add in _PARTS:
        if not known or command in words:
            add(app)
    return app


def print_error(error: AtelierError) -> None:
    """Print an error as one red `error:` line on stderr, any further lines of its message dimmed."""
    console = Console(stderr=True, highlight=False, soft_wrap=True)
    first, *rest = str(error).splitlines() or [""]
    console.print(Text(f"error: {first}", style="red"))
    for line in rest:
        console.print(Text(line, style="dim"))


def local_problem(error: OSError) -> str:
    """What went wrong with a local file, as one line: `PATH: reason`."""
    reason = error.strerror or str(error)
    return f"{error.filename}: {reason}" if error.filename is not None else reason


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
    try:
        with traced_command(sys.argv[1:]):
            try:
                build(command_word(sys.argv[1:]))(prog_name="atelier")
            except AtelierError as error:
                print_error(error)
                sys.exit(1)
            except OSError as error:  # a local file or directory the command could not use
                print_error(AtelierError(local_problem(error)))
                sys.exit(1)
    except SystemExit as exit_:
        exit_now(exit_)
        raise


def exit_now(exit_: SystemExit) -> None:
    """End the process with `exit_`'s status without tearing the interpreter down, when nothing but
    the process's end is left: exit handlers run and output is flushed, but the objects a command
    made are not freed one by one nor walked by a last collection (after a push of 100,000 files,
    0.1 s of the command's time). Returns, for a normal exit, while a thread that is not a daemon
    still runs."""
    if any(not thread.daemon and thread is not threading.main_thread() for thread in threading.enumerate()):
        return
    code = exit_.code
    if code is not None and not isinstance(code, int):
        print(code, file=sys.stderr)
        code = 1
    atexit._run_exitfuncs()
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except OSError:  # a closed pipe: the output is lost either way
        code = code or 1
    os._exit(code or 0)


if __name__ == "__main__":
    main()
