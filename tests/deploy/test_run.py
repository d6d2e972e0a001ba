"""A deployment of deploy/ run for real, as processes on this machine: each Atelier container's command
with the environment its file gives it and the secrets `atelier iam deployment-secrets` made, on the real
PostgreSQL and an S3-protocol server (moto in MinIO's place).

There are no containers here, so what the container runtime would provide is stood in for, the same way
for every value: each container's name (and `postgres`, `minio`) is 127.0.0.1 at the port it listens on,
every port the deployment uses is mapped to a free one (the same map for every value, so the wiring is the
file's), each container has its own home directory, the databases get a suffix of their own, and secrets
mounted as files are where deployment-secrets wrote them. The node agent finds no GPU here: it declares
one card instead of asking NVML. Compose's processes start in its dependency order, Kubernetes' with the
gateway last (pods start in any order). Then the CLI, through the front door with the first admin's token, pushes
and pulls a dataset, the agent's node shows in the cluster, and a restarted gateway still accepts every
service's token.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import re
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest

from atelier.client.credentials import read_credentials
from atelier.stack.local import Health, check_health
from tests.conftest import PG_ADMIN
from tests.deploy.processes import (
    Process,
    compose_processes,
    deployment_secrets,
    kubernetes_processes,
    listening_ports,
    resolve,
)

ROOT = Path(__file__).resolve().parents[2]
DEPLOYMENTS: dict[str, Callable[[], list[Process]]] = {"compose": compose_processes, "kubernetes": kubernetes_processes}
# Compose starts what others depend on first; Kubernetes starts every pod at once, so there the gateway
# (the IAM service every call is checked with) comes up last, after every process that needs it.
START_ORDERS = {
    "compose": ("gateway", "data", "registry", "scheduler", "monitor", "inference", "agent"),
    "kubernetes": ("data", "registry", "scheduler", "monitor", "inference", "agent", "gateway"),
}
_HOST_PORT = re.compile(r"(?P<host>[A-Za-z0-9][A-Za-z0-9.-]*):(?P<port>\d+)")

pytestmark = pytest.mark.timeout(600)


class Deployment:
    """The processes of one deployment file, their environments stood in for as the module says."""

    def __init__(self, kind: str, root: Path, secrets: dict[str, str], s3: str) -> None:
        processes = DEPLOYMENTS[kind]()
        self.order = START_ORDERS[kind]
        self.root = root
        self.secrets = secrets
        self.s3 = s3
        self.suffix = uuid.uuid4().hex[:8]
        self.processes = {p.name: p for p in processes}
        self.ports = {port: _unclaimed_port() for p in processes for port in listening_ports(p, secrets).values()}
        self.databases: set[str] = set()
        self.running: dict[str, subprocess.Popen[bytes]] = {}

    def env(self, process: Process) -> dict[str, str]:
        home = self.root / process.name
        home.mkdir(exist_ok=True)
        env = {key: value for key, value in os.environ.items() if not key.startswith("ATELIER_")}
        env |= {"ATELIER_HOME": str(home), "PYTHONPATH": str(ROOT)}
        for key, value in process.env.items():
            text = resolve(value, self.secrets) or ""
            if key.endswith("_SERVICE_TOKENS_FILE"):
                text = str(self.root / "secrets" / "service-tokens.json")
            elif key.endswith("_PORT") and text.isdigit():
                text = str(self.ports.get(int(text), int(text)))
            elif key.endswith("_DATABASE_URL"):
                text = self._database(text)
            else:
                text = _HOST_PORT.sub(self._address, text)
            env[key] = text
        if process.module == "services.scheduler.agent":
            env |= {
                "ATELIER_AGENT_DISCOVERY": "declared",
                "ATELIER_AGENT_INVENTORY_JSON": json.dumps({"cards": [{"model": "A100-80"}]}),
                "ATELIER_AGENT_WORK_DIR": str(home / "work"),
                "ATELIER_AGENT_ADDRESS": "127.0.0.1",
            }
        return env

    def _address(self, match: re.Match[str]) -> str:
        host, port = match["host"].split(".")[0], int(match["port"])
        if match["host"] == "127.0.0.1" and port in self.ports:  # a published port, from the host's network
            return f"127.0.0.1:{self.ports[port]}"
        if host == "postgres":
            return "127.0.0.1:5432"
        if host == "minio":
            return self.s3
        if host in self.processes:
            return f"127.0.0.1:{self.ports[port]}"
        return match.group(0)

    def _database(self, url: str) -> str:
        """The URL with the host stood in for, on a fresh database of its own (owned by the URL's user)."""
        url = _HOST_PORT.sub(self._address, url)
        base, _, name = url.rpartition("/")
        user = re.match(r"[a-z+]+://([^:@/]+)", url)
        assert user is not None, url
        fresh = f"{name}_{self.suffix}"
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            if conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (user[1],)).fetchone() is None:
                # Made meanwhile by a test beside this one: a race reports either error.
                with contextlib.suppress(psycopg.errors.DuplicateObject, psycopg.errors.UniqueViolation):
                    conn.execute(f'CREATE ROLE "{user[1]}" LOGIN')
            if fresh not in self.databases:
                conn.execute(f'CREATE DATABASE "{fresh}" OWNER "{user[1]}"')
        self.databases.add(fresh)
        return f"{base}/{fresh}"

    def start(self, name: str) -> None:
        process = self.processes[name]
        env = self.env(process)
        log = open(self.root / f"{name}.log", "ab")  # noqa: SIM115 - closed with the process
        self.running[name] = subprocess.Popen(
            [sys.executable, "-m", process.module], env=env, stdout=log, stderr=subprocess.STDOUT, cwd=self.root
        )
        log.close()
        if process.health is not None:  # the health check the deployment declares, as it declares it
            port, service = process.health
            self.wait_serving(name, self.ports[port], service)

    def wait_serving(self, name: str, port: int, service: str, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while check_health(f"127.0.0.1:{port}", service=service) is not Health.SERVING:
            if self.running[name].poll() is not None or time.monotonic() > deadline:
                log = (self.root / f"{name}.log").read_text()[-3000:]
                pytest.fail(f"{name} did not start serving on {port}:\n{log}")
            time.sleep(0.2)

    def stop(self, name: str) -> None:
        running = self.running.pop(name)
        running.terminate()
        try:
            running.wait(30)
        except subprocess.TimeoutExpired:
            running.kill()
            running.wait(30)

    def close(self) -> None:
        for name in list(reversed(list(self.running))):
            self.stop(name)
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            for name in self.databases:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def front_door(self) -> str:
        gateway = self.processes["gateway"]
        return f"127.0.0.1:{self.ports[listening_ports(gateway, self.secrets)['port']]}"

    def cli(self, *args: str) -> str:
        env = {key: value for key, value in os.environ.items() if not key.startswith("ATELIER_")}
        admin = read_credentials(self.root / "gateway" / "credentials")["token"]
        env |= {
            "ATELIER_ADDRESS": self.front_door(),
            "ATELIER_TOKEN": admin,
            "ATELIER_HOME": str(self.root / "user"),
            "PYTHONPATH": str(ROOT),
        }
        result = subprocess.run(
            [sys.executable, "-m", "atelier.cli.main", *args], env=env, capture_output=True, text=True, timeout=120
        )
        assert result.returncode == 0, result.stdout + result.stderr
        return result.stdout


@pytest.fixture(params=sorted(DEPLOYMENTS))
def deployment(request: pytest.FixtureRequest, tmp_path: Path, s3_endpoint: str) -> Iterator[Deployment]:
    request.getfixturevalue("postgres_available")
    secrets = deployment_secrets(tmp_path / "secrets")
    running = Deployment(request.param, tmp_path, secrets, s3_endpoint)
    try:
        yield running
    finally:
        running.close()


def _unclaimed_port() -> int:
    """A free port below the kernel's ephemeral range: a port the kernel hands out (a `bind(0)` by another
    test running beside this one) is never one of these, so none is taken between now and the service's
    bind, as a port free now in that range could be."""
    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    while True:
        port = random.randrange(max(low - 12_000, 1024), low)
        with socket.socket() as probe:
            try:
                probe.bind(("0.0.0.0", port))
            except OSError:
                continue
        return port


def test_the_deployment_runs(deployment: Deployment, tmp_path: Path) -> None:
    assert set(deployment.processes) == set(deployment.order)
    for name in deployment.order:
        deployment.start(name)

    files = tmp_path / "files"
    (files / "a").mkdir(parents=True)
    (files / "a" / "one.txt").write_text("one\n")
    (files / "two.bin").write_bytes(os.urandom(100_000))
    pushed = json.loads(deployment.cli("data", "push", str(files), "deployed", "--project", "lab", "--json"))
    assert pushed["created"]
    deployment.cli("data", "pull", "lab/deployed", str(tmp_path / "pulled"))
    assert (tmp_path / "pulled" / "two.bin").read_bytes() == (files / "two.bin").read_bytes()

    deadline = time.monotonic() + 60
    while not (nodes := json.loads(deployment.cli("cluster", "--json"))):
        assert time.monotonic() < deadline, "the agent's node never showed in the cluster"
        time.sleep(0.5)
    (node,) = nodes
    assert [card["model"] for card in node["cards"]] == ["A100-80"]

    # A restarted gateway keeps the services' tokens (kept from the same file again), and its admin's.
    deployment.stop("gateway")
    deployment.start("gateway")
    listed = json.loads(deployment.cli("data", "ls", "lab/deployed", "--json"))
    assert sorted(entry["path"] for entry in listed) == ["a/one.txt", "two.bin"]
