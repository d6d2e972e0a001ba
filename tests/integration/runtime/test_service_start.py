"""A service that cannot start says why in one log line and exits 1, rather than with a traceback."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path


def test_a_port_in_use_is_named(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {
            **os.environ,
            "ATELIER_HOME": str(tmp_path / "home"),
            "ATELIER_DATA_HOST": "127.0.0.1",
            "ATELIER_DATA_PORT": str(port),
            "ATELIER_DATA_METRICS_PORT": "-1",
            "ATELIER_DATA_LOG_FORMAT": "text",
        }
        ended = subprocess.run(
            [sys.executable, "-m", "services.data"], env=env, capture_output=True, text=True, timeout=60
        )

    assert ended.returncode == 1
    assert f"data cannot start: data cannot listen on 127.0.0.1:{port}: the port is in use" in ended.stderr
    assert "ATELIER_DATA_PORT" in ended.stderr
    assert "Traceback" not in ended.stderr


def _start(module: str, tmp_path: Path, **variables: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "ATELIER_HOME": str(tmp_path / "home"), "ATELIER_DATA_LOG_FORMAT": "text", **variables}
    return subprocess.run([sys.executable, "-m", module], env=env, capture_output=True, text=True, timeout=60)


def test_settings_a_service_cannot_take_are_named_with_what_is_allowed(tmp_path: Path) -> None:
    ended = _start("services.data", tmp_path, ATELIER_DATA_PORT="http", ATELIER_AUTH="maybe")

    assert ended.returncode == 2
    assert ended.stderr.strip().splitlines() == [
        "data cannot start: ATELIER_DATA_PORT='http': Input should be a valid integer, unable to parse string as an "
        "integer; ATELIER_AUTH='maybe': String should match pattern '^(on|off|auto)$'"
    ]
    gateway = _start("gateway", tmp_path, ATELIER_GATEWAY_MAX_BODY_BYTES="8MB")
    assert gateway.returncode == 2
    assert gateway.stderr.startswith("gateway cannot start: ATELIER_GATEWAY_MAX_BODY_BYTES='8MB': ")


def test_a_database_that_cannot_be_used_is_named_without_its_password(tmp_path: Path) -> None:
    driverless = _start("services.data", tmp_path, ATELIER_DATA_DATABASE_URL="mysql://ana:s3cret@db/lab")
    assert driverless.returncode == 1
    assert "data cannot start: database URL mysql://ana:***@db/lab cannot be used" in driverless.stderr
    assert "s3cret" not in driverless.stderr
    assert "Traceback" not in driverless.stderr

    down = _start("services.data", tmp_path, ATELIER_DATA_DATABASE_URL="postgresql://postgres@127.0.0.1:1/test")
    assert down.returncode == 1
    assert "data cannot start: database unavailable: connection failed" in down.stderr
    assert "Traceback" not in down.stderr
