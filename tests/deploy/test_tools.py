"""The two commands a deployment uses besides the services: `atelier iam deployment-secrets` and the
container health check `python -m atelier.stack.probe`."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from atelier.runtime.auth import TOKEN_PREFIX
from atelier.stack.addresses import free_port
from tests.deploy.processes import read_env_file


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True, timeout=60, check=False)


def test_deployment_secrets_are_private_consistent_and_never_replaced(tmp_path: Path) -> None:
    target = tmp_path / "secrets"
    made = run("atelier.cli.main", "iam", "deployment-secrets", str(target))
    assert made.returncode == 0, made.stderr
    env = read_env_file(target / "atelier.env")
    accounts = json.loads((target / "service-tokens.json").read_text())
    for path in (target / "atelier.env", target / "service-tokens.json"):
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    services = ("data", "registry", "scheduler", "inference", "monitor")
    for name in services:
        assert accounts[f"svc-{name}"] == {"secret": env[f"ATELIER_{name.upper()}_TOKEN"], "role": "service"}
    assert accounts["node-agents"] == {"secret": env["ATELIER_AGENT_TOKEN"], "role": "agent"}
    tokens = [value for key, value in env.items() if key.endswith("_TOKEN")]
    assert len(set(tokens)) == len(services) + 1
    assert all(token.startswith(TOKEN_PREFIX) for token in tokens)
    assert len(env["POSTGRES_PASSWORD"]) >= 24
    assert env["POSTGRES_PASSWORD"] != env["MINIO_ROOT_PASSWORD"]

    again = run("atelier.cli.main", "iam", "deployment-secrets", str(target))
    assert again.returncode != 0
    assert "atelier.env exists" in again.stderr
    assert "Traceback" not in again.stderr
    assert read_env_file(target / "atelier.env") == env


def test_the_probe_says_whether_a_service_serves(serve: Callable[[Callable[[], Any]], str], tmp_path: Path) -> None:
    from services.data.server import build
    from services.data.settings import DataSettings

    address = serve(lambda: build(DataSettings(home=tmp_path / "home")))
    serving = run("atelier.stack.probe", address)
    assert serving.returncode == 0
    assert serving.stdout.strip() == f"{address}: SERVING"
    unknown = run("atelier.stack.probe", address, "no.such.Service")
    assert unknown.returncode == 1
    closed = run("atelier.stack.probe", f"127.0.0.1:{free_port()}")
    assert closed.returncode == 1
    assert "UNREACHABLE" in closed.stdout
    assert run("atelier.stack.probe").returncode == 2
