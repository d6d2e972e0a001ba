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
