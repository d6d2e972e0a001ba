"""Child processes: their environments, running and stopping them, and the CPU time they use."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from benchmarks.paths import REPO

from .config import MLFLOW_VENV, PROJECT, Result


def atelier_env(**extra: str) -> dict[str, str]:
    # The checkout is not pip-installed into .venv: PYTHONPATH makes `atelier` and `services` importable.
    return {**os.environ, "PYTHONPATH": str(REPO), "ATELIER_PROJECT": PROJECT, **extra}


def mlflow_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    env["PATH"] = f"{MLFLOW_VENV / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    env["MLFLOW_DISABLE_TELEMETRY"] = "true"
    env["DO_NOT_TRACK"] = "true"
    return env


def run_command(command: Sequence[str | Path], env: dict[str, str], timeout: float, log: Path | None = None) -> str:
    """Run to completion; stdout (stderr goes to `log`, and its tail is shown on failure)."""
    done = subprocess.run(
        [str(c) for c in command], cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    if log is not None:
        with open(log, "a") as handle:
            handle.write(done.stderr)
    if done.returncode != 0:
        sys.stderr.write(done.stdout[-3000:] + done.stderr[-3000:])
        raise RuntimeError(f"{' '.join(str(c) for c in command)[:300]} exited with {done.returncode}")
    return done.stdout


def stop(process: subprocess.Popen[bytes], group: bool = False) -> None:
    """SIGTERM (to the process group it leads when `group`), then SIGKILL after a minute."""
    if process.poll() is not None:
        return
    for sig in (signal.SIGTERM, signal.SIGKILL):
        if group:
            os.killpg(process.pid, sig)
        else:
            process.send_signal(sig)
        try:
            process.wait(timeout=60)
            return
        except subprocess.TimeoutExpired:
            continue


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def cpu_seconds(pids: Sequence[int]) -> float:
    """User + system CPU seconds the live processes `pids` have used so far."""
    total = 0.0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def group_pids(group: int) -> list[int]:
    """The processes of a process group (the MLflow server and its workers)."""
    pids = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and int((entry / "stat").read_text().rsplit(")", 1)[1].split()[2]) == group:
                pids.append(int(entry.name))
        except OSError:
            continue
    return pids


def with_server_cpu(servers: dict[str, Callable[[], list[int]]], run: Callable[[], Result]) -> Result:
    """`run()`, adding the CPU seconds per version each server process (group) used meanwhile."""
    before = {name: cpu_seconds(pids()) for name, pids in servers.items()}
    result = run()
    for name, pids in servers.items():
        result["cpu"][name] = (cpu_seconds(pids()) - before[name]) / max(result["count"], 1)
    return result
