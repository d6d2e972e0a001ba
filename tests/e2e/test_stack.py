"""The one-machine stack with real processes: `atelier up/status/down` and address resolution."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from atelier.errors import DeadlineExceeded, Unavailable
from atelier.stack import local, service_address
from atelier.stack.addresses import address_file, pid_alive

pytestmark = pytest.mark.timeout(120)

ROOT = Path(__file__).resolve().parents[2]


def atelier(home: Path, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run the CLI as a subprocess with `home` as its ATELIER_HOME."""
    return subprocess.run(
        [sys.executable, "-m", "atelier.cli.main", *args],
        cwd=ROOT,
        env=_env(home),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ATELIER_")}
    return {**env, "ATELIER_HOME": str(home)}


def statuses(home: Path) -> dict[str, dict[str, Any]]:
    """Every service's entry of `atelier status --json`, by name."""
    result = atelier(home, "status", "--json")
    assert result.returncode == 0, result.stderr
    return {s["name"]: s for s in json.loads(result.stdout)["services"]}


def status_of(home: Path) -> dict[str, Any]:
    """The `data` entry of `atelier status --json`."""
    return dict(statuses(home)["data"])


def health_check(address: str) -> int:
    """A plain `grpc.health.v1` Check of the whole server."""
    with grpc.insecure_channel(address) as channel:
        response = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
    return int(response.status)


def start_detached(home: Path) -> dict[str, Any]:
    """`atelier up --detach --base-port 0`, then the data service's status."""
    result = atelier(home, "up", "--detach", "--base-port", "0")
    assert result.returncode == 0, result.stdout + result.stderr
    data = status_of(home)
    assert data["address"] in result.stdout
    return data


@pytest.fixture
def make_home(tmp_path: Path) -> Iterator[Any]:
    """Homes for stacks; whatever a test left running is stopped afterwards."""
    homes: list[Path] = []

    def make(name: str = "home") -> Path:
        homes.append(tmp_path / name)
        return homes[-1]

    yield make
    for home in homes:
        atelier(home, "down")


def test_up_status_down(make_home: Any) -> None:
    home = make_home()
    data = start_detached(home)

    assert data["health"] == "SERVING"
    assert data["alive"] is True
    assert health_check(data["address"]) == health_pb2.HealthCheckResponse.SERVING
    assert service_address("data", home) == data["address"]
    assert json.loads(address_file(home, "data").read_text())["pid"] == data["pid"]
    with urllib.request.urlopen(f"http://{data['metrics']}/metrics", timeout=10) as scraped:
        assert b"grpc_server_handled_total" in scraped.read()  # every service is scrapeable

    result = atelier(home, "down")
    assert result.returncode == 0, result.stderr
    assert f"stopped data (pid {data['pid']})" in result.stdout
    assert not pid_alive(data["pid"])
    assert not address_file(home, "data").exists()
    after = status_of(home)
    assert (after["alive"], after["address"], after["health"]) == (False, None, "UNREACHABLE")
    assert "no stack running" in atelier(home, "down").stdout


def test_status_table(make_home: Any) -> None:
    home = make_home()
    data = start_detached(home)
    result = atelier(home, "status")
    assert result.returncode == 0, result.stderr
    assert "SERVING" in result.stdout
    assert data["address"] in result.stdout


def test_two_stacks_side_by_side(make_home: Any) -> None:
    first, second = make_home("first"), make_home("second")
    one, two = start_detached(first), start_detached(second)

    assert one["address"] != two["address"]
    assert one["pid"] != two["pid"]
    assert atelier(first, "down").returncode == 0
    assert not pid_alive(one["pid"])
    assert status_of(second)["health"] == "SERVING"
    assert health_check(two["address"]) == health_pb2.HealthCheckResponse.SERVING


def test_second_stack_in_same_home_is_refused(make_home: Any) -> None:
    home = make_home()
    data = start_detached(home)

    result = atelier(home, "up", "--detach", "--base-port", "0")
    assert result.returncode == 1
    assert result.stderr.startswith("error: a stack is already running in")
    assert "atelier down" in result.stderr
    assert "Traceback" not in result.stderr
    assert status_of(home)["address"] == data["address"]
    assert health_check(data["address"]) == health_pb2.HealthCheckResponse.SERVING


def test_foreground_up_stops_the_services_on_sigterm(make_home: Any) -> None:
    home = make_home()
    command = [sys.executable, "-m", "atelier.cli.main", "up", "--base-port", "0"]
    with subprocess.Popen(command, cwd=ROOT, env=_env(home), stdout=subprocess.PIPE, text=True) as up:
        data = _wait_serving(home, up)
        assert atelier(home, "up", "--detach", "--base-port", "0").returncode == 1
        up.send_signal(signal.SIGTERM)
        assert up.wait(timeout=30) == 0
    assert not pid_alive(data["pid"])
    assert status_of(home)["alive"] is False


def _wait_serving(home: Path, up: subprocess.Popen[str]) -> dict[str, Any]:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert up.poll() is None, "atelier up exited early"
        every = statuses(home)
        if all(s["health"] == "SERVING" for s in every.values()):
            return dict(every["data"])
        time.sleep(0.2)
    pytest.fail("the foreground stack never became healthy")


def test_a_service_that_cannot_start_says_why_and_where_its_log_is(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(Unavailable) as failure:
            local.up(tmp_path, base_port=port, timeout=60)
    message = str(failure.value)
    assert message.startswith(f"the data service could not start: data cannot listen on 127.0.0.1:{port}")
    assert str(tmp_path / "logs" / "data.log") in message
    assert "`atelier up --base-port N` moves every service's ports" in message
    assert not address_file(tmp_path, "data").exists()
    assert all(not s.alive for s in local.status(tmp_path))


def test_a_service_that_is_not_serving_in_time_is_stopped(tmp_path: Path) -> None:
    with pytest.raises(DeadlineExceeded, match="not serving after"):
        local.up(tmp_path, base_port=0, timeout=0.01)
    stack = local.status(tmp_path)
    assert all(not s.alive and s.health is local.Health.UNREACHABLE for s in stack)


def test_service_address_env_beats_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = address_file(tmp_path, "data")
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"address": "127.0.0.1:1111", "pid": os.getpid()}))
    monkeypatch.delenv("ATELIER_DATA_ADDRESS", raising=False)
    assert service_address("data", tmp_path) == "127.0.0.1:1111"

    monkeypatch.setenv("ATELIER_DATA_ADDRESS", "example.org:2222")
    assert service_address("data", tmp_path) == "example.org:2222"


def test_service_address_defaults_to_atelier_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = address_file(tmp_path, "data")
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"address": "127.0.0.1:3333", "pid": os.getpid()}))
    monkeypatch.delenv("ATELIER_DATA_ADDRESS", raising=False)
    monkeypatch.setenv("ATELIER_HOME", str(tmp_path))
    assert service_address("data") == "127.0.0.1:3333"


def test_missing_address_is_unavailable_with_a_hint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ATELIER_DATA_ADDRESS", raising=False)
    with pytest.raises(Unavailable) as missing:
        service_address("data", tmp_path)
    hint = "run `atelier up` or set ATELIER_DATA_ADDRESS"
    assert str(missing.value) == f"no address for the data service: {hint}"


def test_address_of_a_dead_process_is_unavailable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True)
    path = address_file(tmp_path, "data")
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"address": "127.0.0.1:4444", "pid": int(finished.stdout)}))
    monkeypatch.delenv("ATELIER_DATA_ADDRESS", raising=False)
    with pytest.raises(Unavailable, match="is not running: run `atelier up`"):
        service_address("data", tmp_path)


def test_the_gateway_serves_the_stack_at_one_grpc_and_one_http_address(make_home: Any) -> None:
    from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

    home = make_home()
    start_detached(home)
    found = statuses(home)
    gateway = found["gateway"]
    assert gateway["health"] == "SERVING"
    assert service_address("gateway", home) == gateway["address"]  # what clients are pointed at
    with grpc.insecure_channel(gateway["address"]) as channel:
        check = health_pb2_grpc.HealthStub(channel).Check
        answer = check(health_pb2.HealthCheckRequest(service="atelier.data.v1.DataService"), timeout=10)
        assert answer.status == health_pb2.HealthCheckResponse.SERVING  # asked of the data service
        request = reflection_pb2.ServerReflectionRequest(list_services="")
        (listed,) = reflection_pb2_grpc.ServerReflectionStub(channel).ServerReflectionInfo(iter([request]), timeout=10)
    names = {s.name for s in listed.list_services_response.service}
    assert {"atelier.data.v1.DataService", "inference.GRPCInferenceService", "grpc.health.v1.Health"} <= names
    with urllib.request.urlopen(f"http://{gateway['http']}/healthz", timeout=10) as response:
        healthz = json.loads(response.read())
    assert healthz["unreachable"] == []
    assert set(healthz["services"]) == {name for name in found if name != "gateway"}

    result = atelier(home, "down")
    assert f"stopped gateway (pid {gateway['pid']})" in result.stdout
    assert not pid_alive(gateway["pid"])
