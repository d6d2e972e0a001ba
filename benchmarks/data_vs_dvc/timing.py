"""The record of a run's steps, running commands, timing them, and the page cache."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .config import COMMAND_TIMEOUT


@dataclass
class Step:
    tool: str
    label: str
    seconds: float


@dataclass
class Run:
    """Everything measured, in order."""

    cold_cache: bool = False
    steps: list[Step] = field(default_factory=list)
    figures: dict[str, float] = field(default_factory=dict)
    # The machine's 1-minute load average after each step: other work slows both tools.
    loads: list[float] = field(default_factory=list)

    def record(self, tool: str, label: str, seconds: float) -> float:
        self.steps.append(Step(tool, label, seconds))
        self.loads.append(os.getloadavg()[0])
        print(f"  {tool:<8} {label:<58} {seconds:9.2f} s", file=sys.stderr, flush=True)
        return seconds


def drop_caches() -> bool:
    """Drop the page cache if allowed; whether it worked."""
    os.sync()
    try:
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
    except OSError:
        return False
    return True


def run_command(
    command: Sequence[str | Path], *, cwd: Path, env: dict[str, str], timeout: float = COMMAND_TIMEOUT
) -> str:
    """Run a command to completion; its stdout (stderr is shown if it fails)."""
    done = subprocess.run(
        [str(c) for c in command], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    if done.returncode != 0:
        sys.stderr.write(done.stdout[-4000:] + done.stderr[-4000:])
        raise RuntimeError(f"{' '.join(str(c) for c in command)} exited with {done.returncode}")
    return done.stdout


def timed(
    run: Run,
    tool: str,
    label: str,
    command: Sequence[str | Path],
    cwd: Path,
    env: dict[str, str],
    warm: Sequence[str | Path] = (),
) -> str:
    """Run one timed step. Dirty pages are written back first, so no step pays for the previous
    one's writes. When the page cache may be dropped, it is, and then `warm` (a trivial command of
    the same tool) is run untimed, so that the data is read cold but the tool's own code starts
    warm, as it would for a user who runs it every day."""
    os.sync()
    if run.cold_cache:
        drop_caches()
        if warm:
            run_command(warm, cwd=cwd, env=env)
    start = time.perf_counter()
    out = run_command(command, cwd=cwd, env=env)
    run.record(tool, label, time.perf_counter() - start)
    return out


def tree_bytes(root: Path) -> int:
    """Apparent size of all regular files under `root`."""
    total = 0
    for folder, _, names in os.walk(root):
        for name in names:
            total += os.lstat(os.path.join(folder, name)).st_size
    return total


def tree_files(root: Path) -> int:
    return sum(len(names) for _, _, names in os.walk(root))
