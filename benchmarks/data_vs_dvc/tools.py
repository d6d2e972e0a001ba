"""The two tools under test: Atelier's data service and CLI, and DVC in its own venv."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from benchmarks.paths import PYTHON, REPO, WORK

from .config import DVC_VENV, DVC_WARM, PROJECT, SCRATCH
from .timing import Run, run_command, timed, tree_bytes


class Atelier:
    """A data service on a fresh ATELIER_HOME, driven through the `atelier` command line."""

    def __init__(self, home: Path) -> None:
        self.home = home
        # The checkout is not pip-installed into .venv: PYTHONPATH makes `atelier` and `services` importable.
        self.env = {**os.environ, "ATELIER_HOME": str(home), "ATELIER_PROJECT": PROJECT, "PYTHONPATH": str(REPO)}
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 120.0) -> None:
        address_file = self.home / "run" / "data.json"
        env = {**self.env, "ATELIER_DATA_ADDRESS_FILE": str(address_file), "ATELIER_DATA_PORT": "0"}
        self.home.mkdir(parents=True)
        with open(self.home / "data-service.log", "wb") as log:
            self.process = subprocess.Popen(
                [str(PYTHON), "-m", "services.data"], cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + timeout
        while not address_file.exists():
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the data service did not start; see {self.home / 'data-service.log'}")
            time.sleep(0.1)

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=60)

    def cli(self, *args: str | Path) -> list[str | Path]:
        return [PYTHON, "-m", "atelier.cli.main", "data", *args, "--json"]

    @property
    def warm(self) -> list[str | Path]:
        return [PYTHON, "-m", "atelier.cli.main", "data", "--help"]

    def push(self, run: Run, label: str, directory: Path, dataset: str) -> dict[str, Any]:
        out = timed(run, "atelier", label, self.cli("push", directory, dataset), SCRATCH, self.env, self.warm)
        result: dict[str, Any] = json.loads(out)
        return result

    def pull(self, run: Run, label: str, dataset: str, directory: Path) -> dict[str, Any]:
        out = timed(run, "atelier", label, self.cli("pull", dataset, directory), SCRATCH, self.env, self.warm)
        result: dict[str, Any] = json.loads(out)
        return result

    def stored_bytes(self) -> int:
        return tree_bytes(self.home / "objects")


@contextmanager
def atelier_stack(home: Path) -> Iterator[Atelier]:
    stack = Atelier(home)
    try:
        stack.start()
        yield stack
    finally:
        stack.stop()


def dvc_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    env["PATH"] = f"{DVC_VENV / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    env["DVC_NO_ANALYTICS"] = "1"
    return env


def ensure_dvc() -> str:
    """Create benchmarks/.work/dvc-venv with DVC 3 unless it is there; DVC's version."""
    dvc = DVC_VENV / "bin" / "dvc"
    if dvc.exists():
        version = run_command([dvc, "--version"], cwd=WORK, env=dvc_env()).strip()
        if version.startswith("3."):
            return version
        shutil.rmtree(DVC_VENV)
    WORK.mkdir(parents=True, exist_ok=True)
    print("creating the DVC venv (python3 -m venv; pip install 'dvc>=3,<4')", file=sys.stderr, flush=True)
    run_command(["python3", "-m", "venv", DVC_VENV], cwd=WORK, env=dvc_env(), timeout=600)
    pip: list[str | Path] = [DVC_VENV / "bin" / "python", "-m", "pip", "install", "-q"]
    run_command([*pip, "--upgrade", "pip"], cwd=WORK, env=dvc_env(), timeout=1800)
    run_command([*pip, "dvc>=3,<4"], cwd=WORK, env=dvc_env(), timeout=1800)
    return run_command([dvc, "--version"], cwd=WORK, env=dvc_env()).strip()


class Dvc:
    """A git + DVC scratch repository with a local remote."""

    def __init__(self, repo: Path, remote: Path) -> None:
        self.repo = repo
        self.remote = remote
        self.env = dvc_env()

    def setup(self) -> None:
        self.repo.mkdir(parents=True, exist_ok=True)
        self.remote.mkdir(parents=True)
        for command in (
            ["git", "init", "-q"],
            ["git", "config", "user.name", "Atelier Benchmark"],
            ["git", "config", "user.email", "benchmark@atelier.invalid"],
            ["dvc", "init", "-q"],
            ["dvc", "config", "core.analytics", "false"],
            ["dvc", "config", "--local", "core.site_cache_dir", str(self.repo.parent / "dvc-site-cache")],
            ["dvc", "remote", "add", "-d", "local", str(self.remote)],
        ):
            run_command(command, cwd=self.repo, env=self.env)

    def timed(self, run: Run, label: str, *args: str) -> str:
        return timed(run, "dvc", label, ["dvc", *args], self.repo, self.env, DVC_WARM)

    def push(self, run: Run, label: str) -> tuple[float, int]:
        """`dvc push`: seconds and bytes the remote grew by."""
        before = tree_bytes(self.remote)
        self.timed(run, label, "push", "-q")
        return run.steps[-1].seconds, tree_bytes(self.remote) - before

    def drop_cache(self) -> None:
        shutil.rmtree(self.repo / ".dvc" / "cache", ignore_errors=True)
