"""The servers under test: Atelier's data service and registries, MLflow's venv and server, PostgreSQL."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks.paths import PYTHON, REPO, WORK

from .config import MLFLOW_VENV, POSTGRES, SCRATCH
from .processes import atelier_env, cpu_seconds, free_port, group_pids, mlflow_env, run_command, stop


def ensure_mlflow() -> str:
    """Create benchmarks/.work/mlflow-venv with MLflow 3 unless it is there; MLflow's version."""
    python = MLFLOW_VENV / "bin" / "python"
    probe: list[str | Path] = [python, "-c", "import mlflow; print(mlflow.__version__)"]
    if python.exists():
        version = run_command(probe, mlflow_env(), 300).strip()
        if version.startswith("3."):
            return version
        shutil.rmtree(MLFLOW_VENV)
    WORK.mkdir(parents=True, exist_ok=True)
    print("creating the MLflow venv (python3 -m venv; pip install 'mlflow>=3,<4')", file=sys.stderr, flush=True)
    run_command(["python3", "-m", "venv", MLFLOW_VENV], mlflow_env(), 600)
    pip: list[str | Path] = [python, "-m", "pip", "install", "-q"]
    run_command([*pip, "--upgrade", "pip"], mlflow_env(), 1800)
    run_command([*pip, "mlflow>=3,<4"], mlflow_env(), 3600)
    return run_command(probe, mlflow_env(), 300).strip()


def start_service(
    module: str, env: dict[str, str], address_file: Path, log: Path
) -> tuple[subprocess.Popen[bytes], str]:
    """`python -m <module>`; its process and the address it published."""
    with open(log, "ab") as handle:
        process = subprocess.Popen(
            [str(PYTHON), "-m", module], cwd=REPO, env=env, stdout=handle, stderr=subprocess.STDOUT
        )
    deadline = time.monotonic() + 120
    while True:
        try:
            return process, str(json.loads(address_file.read_text())["address"])
        except (OSError, ValueError, KeyError):
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            stop(process)
            raise RuntimeError(f"{module} did not start; see {log}")
        time.sleep(0.1)


@dataclass
class Stack:
    """A data service and registries on one ATELIER_HOME."""

    home: Path
    data_address: str = ""
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)
    pids: dict[str, int] = field(default_factory=dict)

    def start_data(self) -> None:
        address_file = self.home / "run" / "data.json"
        env = atelier_env(
            ATELIER_HOME=str(self.home), ATELIER_DATA_ADDRESS_FILE=str(address_file), ATELIER_DATA_PORT="0"
        )
        process, self.data_address = start_service("services.data", env, address_file, self.home / "data.log")
        self.processes.append(process)
        self.pids["data"] = process.pid

    def start_registry(self, label: str, database_url: str = "") -> str:
        address_file = self.home / "run" / f"{label}.json"
        env = atelier_env(
            ATELIER_HOME=str(self.home),
            ATELIER_DATA_ADDRESS=self.data_address,
            ATELIER_REGISTRY_ADDRESS_FILE=str(address_file),
            ATELIER_REGISTRY_PORT="0",
        )
        if database_url:
            env["ATELIER_REGISTRY_DATABASE_URL"] = database_url
        process, address = start_service("services.registry", env, address_file, self.home / f"{label}.log")
        self.processes.append(process)
        self.pids[label] = process.pid
        return address

    def stop(self) -> None:
        for process in reversed(self.processes):
            stop(process)


@contextmanager
def atelier_stack(home: Path) -> Iterator[Stack]:
    home.mkdir(parents=True)
    stack = Stack(home)
    try:
        stack.start_data()
        yield stack
    finally:
        stack.stop()


@contextmanager
def mlflow_server(database: Path) -> Iterator[tuple[str, int]]:
    """`mlflow server` (default workers) on a SQLite file; its URL and process group."""
    port = free_port()
    command = [
        str(MLFLOW_VENV / "bin" / "mlflow"),
        "server",
        "--backend-store-uri",
        f"sqlite:///{database}",
        "--artifacts-destination",
        str(SCRATCH / "mlartifacts"),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]
    with open(SCRATCH / f"mlflow-server-{database.stem}.log", "ab") as log:
        process = subprocess.Popen(
            command, cwd=SCRATCH, env=mlflow_env(), stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url, process)
        wait_settled(process.pid)
        yield url, process.pid
    finally:
        stop(process, group=True)


def wait_settled(group: int, timeout: float = 240.0) -> None:
    """Wait until the server's processes are idle: MLflow 3 starts its job runner and huey consumers
    after it answers /health, and their start-up would eat into the first measurement."""
    deadline = time.monotonic() + timeout
    previous = cpu_seconds(group_pids(group))
    while time.monotonic() < deadline:
        time.sleep(3)
        current = cpu_seconds(group_pids(group))
        if current - previous < 0.15:
            return
        previous = current


def wait_healthy(url: str, process: subprocess.Popen[bytes], timeout: float = 180.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url + "/health", timeout=5) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"mlflow server did not start; see {SCRATCH}/mlflow-server-*.log")
        time.sleep(0.5)


@contextmanager
def postgres_database(enabled: bool) -> Iterator[str]:
    """A scratch PostgreSQL database (dropped afterwards); "" when disabled or unreachable."""
    if not enabled:
        yield ""
        return
    try:
        import psycopg

        admin = psycopg.connect(f"{POSTGRES}/postgres", autocommit=True, connect_timeout=5)
    except Exception as error:  # noqa: BLE001 - PostgreSQL is optional here
        print(f"PostgreSQL unavailable, skipping it: {error}", file=sys.stderr)
        yield ""
        return
    name = f"atelier_bench_registry_{os.getpid()}"
    admin.execute(f"CREATE DATABASE {name}")
    try:
        yield f"{POSTGRES}/{name}"
    finally:
        admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        admin.close()
