"""The demo's own stack: started fresh in its home on ephemeral ports, and always stopped again."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from demo.runner import DemoError, Runner

UP_TIMEOUT_SECONDS = 60
"""How long `atelier up` may wait for every service to be serving."""


@contextmanager
def running_stack(runner: Runner) -> Iterator[None]:
    """Start the stack with `atelier up --detach --base-port 0`; stop it with `atelier down` however the block ends.

    When the block (or `up`) failed, a failure to stop the stack is printed but does not replace that error.
    """
    try:
        _start(runner)
        yield
    except BaseException:
        _stop(runner, quiet=True)
        raise
    _stop(runner, quiet=False)


def _start(runner: Runner) -> None:
    runner.section("Starting a fresh stack")
    runner.step(f"Start every service in a new home ({runner.home}), each on an ephemeral port, with access control on")
    runner.atelier("up", "--detach", "--base-port", "0", "--timeout", str(UP_TIMEOUT_SECONDS), "--auth")
    runner.atelier("status")


def _stop(runner: Runner, *, quiet: bool) -> None:
    """`atelier down`; a failure is raised, or only printed when `quiet`."""
    runner.section("Stopping the stack")
    runner.step("Stop every service the demo started")
    try:
        runner.atelier("down")
    except DemoError as error:
        if not quiet:
            raise
        runner.console.print(f"  could not stop the stack: {error}", style="red", markup=False)
