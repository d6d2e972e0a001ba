"""Running Slurm's commands: a timeout on each, and a failure told in one readable line.

A command that cannot reach the controller (or is missing, or hangs) raises UNAVAILABLE; one that
reached Slurm and was refused raises FAILED_PRECONDITION with Slurm's own message.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping
from pathlib import Path

from atelier.errors import FailedPrecondition, Unavailable

_UNREACHABLE = (
    "unable to contact slurm controller",
    "socket timed out",
    "zero bytes were transmitted",
    "connection refused",
    "communication connection failure",
    "munge",
    "unable to establish controller machine",
)
"""Slurm's words for "the controller (or its authentication) cannot be reached"."""


class SlurmCommands:
    """sbatch, squeue, sacct, scancel and scontrol from `bin_dir` (PATH when empty), reading `conf`
    (SLURM_CONF) when given."""

    def __init__(self, bin_dir: str = "", conf: str = "", timeout: float = 30.0) -> None:
        self.bin_dir = bin_dir
        self.timeout = timeout
        # sbatch hands its environment to the job (--export=ALL): not the scheduler's own settings,
        # which may hold a database URL with its password.
        self.env = {name: value for name, value in os.environ.items() if not name.startswith("ATELIER_")}
        if conf:
            self.env["SLURM_CONF"] = conf

    def run(self, program: str, *args: str, env: Mapping[str, str] | None = None) -> str:
        """The command's standard output; UNAVAILABLE or FAILED_PRECONDITION naming what went wrong. `env`
        adds to the environment sbatch hands the job (a secret there stays out of scripts and `ps`)."""
        path = str(Path(self.bin_dir) / program) if self.bin_dir else program
        try:
            done = subprocess.run(
                [path, *args],
                env={**self.env, **env} if env else self.env,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=self.timeout,
                check=False,
            )
        except FileNotFoundError:
            where = f"in {self.bin_dir}" if self.bin_dir else "on PATH (set ATELIER_SCHEDULER_SLURM_BIN_DIR)"
            raise Unavailable(
                f"Slurm is not reachable: {program} not found {where}", metadata=_about(program)
            ) from None
        except subprocess.TimeoutExpired:
            message = f"Slurm is not reachable: {program} gave no answer in {self.timeout:g} s"
            raise Unavailable(message, metadata=_about(program)) from None
        if done.returncode != 0:
            raise command_error(program, done.returncode, done.stderr or done.stdout)
        return done.stdout


def command_error(program: str, code: int, text: str) -> FailedPrecondition | Unavailable:
    """One line from a failed command's output: its last non-empty line, which is where Slurm puts the
    reason (`sbatch: error: Batch job submission failed: Invalid partition name specified`)."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    line = lines[-1] if lines else f"exit code {code}"
    if any(words in line.lower() for words in _UNREACHABLE):
        return Unavailable(f"Slurm is not reachable: {line}", metadata=_about(program))
    return FailedPrecondition(f"{program} failed: {line}", metadata=_about(program))


def _about(program: str) -> dict[str, str]:
    # Metadata also tells clients that the scheduler answered: UNAVAILABLE is Slurm's, not the service's.
    return {"executor": "slurm", "command": program}
