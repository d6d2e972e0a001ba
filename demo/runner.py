"""The runner every chapter shares: headings, steps, and the `atelier` CLI run as a subprocess."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.rule import Rule
from rich.text import Text

ROOT = Path(__file__).resolve().parents[1]
"""The repository root: put on PYTHONPATH so `atelier` runs without being installed."""

COMMAND_TIMEOUT_SECONDS = 300.0
"""Longest any one `atelier` command may run before the demo gives up on it (the 2-node training job
took over 120 s on the shared 2-core machine under a load average of 10)."""

OUTPUT_COLUMNS = 120
"""The width the CLI's tables are drawn at (their output is captured, so not a terminal)."""


class DemoError(Exception):
    """A step of the demo failed; the message is the one line the demo exits with."""


class Runner:
    """Prints what the demo does and runs `atelier` commands in `work_dir` against the stack in `home`."""

    def __init__(self, work_dir: Path, home: Path, console: Console | None = None) -> None:
        self.work_dir = work_dir
        self.home = home
        self.console = console or Console(highlight=False)
        self.settings: dict[str, str] = {}
        """What the demo adds to every command's environment once set up (the gateway's address)."""
        self.agent_token = ""
        """The node token the demo's agents authenticate with."""

    def chapter(self, number: int, title: str, summary: str) -> None:
        """A chapter's heading and what it is about."""
        self.console.print()
        self.console.print(Rule(Text(f"Chapter {number}: {title}", style="bold magenta")))
        self.console.print(Text(summary, style="italic"))

    def section(self, title: str) -> None:
        """A heading outside the chapters (setting up and tearing down)."""
        self.console.print()
        self.console.print(Rule(Text(title, style="bold cyan")))

    def step(self, text: str) -> None:
        """Announce the next step."""
        self.console.print()
        self.console.print(Text(f"▸ {text}", style="bold"))

    def info(self, text: str) -> None:
        """A line about what a step did."""
        self.console.print(Text(f"  {text}"))

    def ok(self, text: str) -> None:
        """A line saying a check passed."""
        self.console.print(Text(f"  ✓ {text}", style="green"))

    def atelier(self, *args: str, show_output: bool = True) -> str:
        """Run `atelier ARGS...`, print the command and (unless told not to) its output; return stdout."""
        self._print_command(args)
        started = time.monotonic()
        result = self._run(args)
        elapsed = time.monotonic() - started
        if result.returncode != 0:
            self._print_failure(result)
            raise DemoError(f"`{_display(args)}` exited with code {result.returncode}: {_first_line(result)}")
        if show_output:
            self._print_output(result.stdout)
        self.console.print(Text(f"    ({elapsed:.1f}s)", style="dim"))
        return result.stdout

    def python(self, *args: str) -> str:
        """Run `python ARGS...` from the repository (so runs record its git commit); return stdout."""
        self.console.print(Text(f"  $ python {shlex.join(args)}", style="cyan"))
        started = time.monotonic()
        try:
            result = subprocess.run(
                [sys.executable, *args],
                cwd=ROOT,
                env=self.env(),
                capture_output=True,
                text=True,
                timeout=COMMAND_TIMEOUT_SECONDS,
                check=False,
            )
        except subprocess.TimeoutExpired as error:
            raise DemoError(f"`python {shlex.join(args)}` did not finish within {error.timeout:.0f}s") from error
        if result.returncode != 0:
            self._print_failure(result)
            raise DemoError(f"`python {shlex.join(args)}` exited with code {result.returncode}: {_first_line(result)}")
        self.console.print(Text(f"    ({time.monotonic() - started:.1f}s)", style="dim"))
        return result.stdout

    def atelier_fails(self, *args: str, token: str = "") -> str:
        """Run a command that must fail (as the owner of `token`, when given); return its error line."""
        self._print_command(args)
        result = self._run(args, {"ATELIER_TOKEN": token} if token else None)
        if result.returncode == 0:
            raise DemoError(f"`{_display(args)}` should have been refused but succeeded")
        self._print_failure(result)
        return _first_line(result)

    def atelier_json(self, *args: str) -> Any:
        """Run `atelier ARGS... --json` and return its parsed output (printing only the command)."""
        stdout = self.atelier(*args, "--json", show_output=False)
        try:
            return json.loads(stdout)
        except json.JSONDecodeError as error:
            raise DemoError(f"`{_display(args)} --json` printed no valid JSON: {error}") from error

    def quiet_json(self, *args: str) -> Any:
        """`atelier ARGS... --json`, parsed, printing nothing (for polling)."""
        result = self._run((*args, "--json"))
        if result.returncode != 0:
            raise DemoError(f"`{_display(args)} --json` exited with code {result.returncode}: {_first_line(result)}")
        return json.loads(result.stdout)

    def env(self) -> dict[str, str]:
        """The environment of every command: this one, less other stacks' settings, plus the demo's home."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("ATELIER_") or k == "ATELIER_USER"}
        python_path = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
        return {
            **env,
            "ATELIER_HOME": str(self.home),
            "ATELIER_USER": env.get("ATELIER_USER") or env.get("USER") or "demo",
            "PYTHONPATH": python_path,
            "COLUMNS": str(OUTPUT_COLUMNS),
            **self.settings,
        }

    def _run(self, args: tuple[str, ...], extra: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        """The command, run to completion with its output captured."""
        try:
            return subprocess.run(
                [sys.executable, "-m", "atelier.cli.main", *args],
                cwd=self.work_dir,
                env={**self.env(), **(extra or {})},
                capture_output=True,
                text=True,
                timeout=COMMAND_TIMEOUT_SECONDS,
                check=False,
            )
        except subprocess.TimeoutExpired as error:
            raise DemoError(f"`{_display(args)}` did not finish within {error.timeout:.0f}s") from error

    def _print_command(self, args: tuple[str, ...]) -> None:
        self.console.print(Text(f"  $ {_display(args)}", style="cyan"))

    def _print_output(self, output: str) -> None:
        for line in output.rstrip().splitlines():
            self.console.print(Text(f"    {line.rstrip()}"), soft_wrap=True)

    def _print_failure(self, result: subprocess.CompletedProcess[str]) -> None:
        self._print_output(result.stdout)
        for line in result.stderr.rstrip().splitlines():
            self.console.print(Text(f"    {line.rstrip()}", style="red"), soft_wrap=True)


def _first_line(result: subprocess.CompletedProcess[str]) -> str:
    """The first line a failed command printed, without the CLI's own `error: ` prefix."""
    text = result.stderr.strip() or result.stdout.strip() or "no output"
    return text.splitlines()[0].removeprefix("error: ")


def _display(args: tuple[str, ...]) -> str:
    """The command as a user would type it, token secrets elided."""
    return _SECRET.sub(r"\1…", shlex.join(("atelier", *args)))


_SECRET = re.compile(r"(atl_[0-9a-f]{4})[0-9a-f]{12}_\S+")
