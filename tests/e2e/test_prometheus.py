"""`atelier up --with-prometheus`: Debian's Prometheus scraping every service of a real stack."""

from __future__ import annotations

import json
import shutil
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from atelier.stack.addresses import pid_alive
from atelier.stack.services import SERVICES
from tests.e2e.test_stack import atelier, statuses

pytestmark = [
    pytest.mark.timeout(180),
    pytest.mark.skipif(shutil.which("prometheus") is None, reason="prometheus is not installed (make prometheus)"),
]


def query(address: str, promql: str) -> list[dict[str, Any]]:
    url = f"http://{address}/api/v1/query?{urllib.parse.urlencode({'query': promql})}"
    with urllib.request.urlopen(url, timeout=10) as response:
        body = json.loads(response.read())
    assert body["status"] == "success", body
    return list(body["data"]["result"])


def test_prometheus_scrapes_every_service(tmp_path: Path) -> None:
    home = tmp_path / "home"
    result = atelier(home, "up", "--detach", "--base-port", "0", "--with-prometheus", timeout=120)
    try:
        assert result.returncode == 0, result.stdout + result.stderr
        found = statuses(home)
        assert found["prometheus"]["health"] == "SERVING"
        address = found["prometheus"]["address"]
        assert f"http://{address}" in result.stdout
        wanted = {s.name for s in SERVICES}
        deadline = time.monotonic() + 60
        while True:
            up = {r["metric"]["job"] for r in query(address, "up == 1")}
            if wanted <= up or time.monotonic() > deadline:
                break
            time.sleep(1)
        assert wanted <= up
        handled = query(address, "sum by (job) (grpc_server_handled_total)")
        services = {s.name for s in SERVICES if s.kind == "grpc"}
        assert services <= {r["metric"]["job"] for r in handled}  # the health checks of `up` itself
        with urllib.request.urlopen(f"http://{address}/api/v1/rules", timeout=10) as response:
            groups = json.loads(response.read())["data"]["groups"]
        assert {"atelier-gpus", "atelier-cluster", "atelier-serving"} <= {g["name"] for g in groups}
    finally:
        stopped = atelier(home, "down")
    assert stopped.returncode == 0, stopped.stderr
    pid = found["prometheus"]["pid"]
    assert f"stopped prometheus (pid {pid})" in stopped.stdout
    assert not pid_alive(pid)
    assert not list((home / "prometheus" / "targets").glob("*.json"))


def test_a_missing_prometheus_is_one_line_and_starts_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "home"
    monkeypatch.setenv("PATH", "/nonexistent")
    result = atelier(home, "up", "--detach", "--base-port", "0", "--with-prometheus")
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "error: prometheus is not installed: run `make prometheus` (Debian's package) "
        "or point ATELIER_PROMETHEUS_BIN at a prometheus binary"
    ]
    assert not (home / "run" / "stack.json").exists()
