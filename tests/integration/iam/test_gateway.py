"""The gateway as a real process with access control on: it runs the IAM service beside its front
door, REST calls carry their bearer token to the services, and identities are managed through the
one address."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest

from atelier.client.credentials import read_credentials
from atelier.iam.v1 import iam_service_pb2 as pb
from atelier.iam.v1 import iam_service_pb2_grpc
from atelier.iam.v1 import resources_pb2 as res
from atelier.stack.addresses import read_address_file

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[tuple[str, str, Path]]:
    """(front door address, REST address, home) of a gateway process with ATELIER_AUTH=on."""
    home = tmp_path / "home"
    address_file = home / "run" / "gateway.json"
    env = {
        **os.environ,
        "ATELIER_AUTH": "on",
        "ATELIER_HOME": str(home),
        "ATELIER_GATEWAY_ADDRESS_FILE": str(address_file),
        "ATELIER_GATEWAY_METRICS_PORT": "-1",
        "PYTHONPATH": str(ROOT),
    }
    log = (tmp_path / "gateway.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "gateway"], env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT
    )
    deadline = time.monotonic() + 60
    while (published := read_address_file(address_file)) is None:
        if process.poll() is not None or time.monotonic() > deadline:
            raise AssertionError((tmp_path / "gateway.log").read_text())
        time.sleep(0.1)
    yield published.address, published.http, home
    process.send_signal(signal.SIGTERM)
    process.wait(timeout=20)


def test_rest_and_grpc_through_the_gateway_carry_identities_that_the_services_check(
    serve: Callable[[Callable[[], Any]], str], gateway: tuple[str, str, Path]
) -> None:
    from services.data.server import build
    from services.data.settings import DataSettings

    door, http, home = gateway
    admin_token = read_credentials(home / "credentials")["token"]
    iam_address = json.loads((home / "run" / "iam.json").read_text())["address"]
    settings = DataSettings(
        home=home, auth="on", iam_address=iam_address, auth_cache_seconds=0, address_file=home / "run" / "data.json"
    )
    serve(lambda: build(settings))
    base = f"http://{http}/v1"
    admin = {"authorization": f"Bearer {admin_token}"}

    refused = httpx.post(f"{base}/projects", params={"projectId": "vision"}, json={})
    assert refused.status_code == 401
    assert refused.json()["error"]["status"] == "UNAUTHENTICATED"
    assert httpx.post(f"{base}/projects", params={"projectId": "vision"}, json={}, headers=admin).status_code == 200

    with grpc.insecure_channel(door) as channel:
        iam = iam_service_pb2_grpc.IamServiceStub(channel)
        metadata = tuple(admin.items())
        iam.CreateUser(pb.CreateUserRequest(user_id="alice"), metadata=metadata)
        member = res.Member(principal="users/alice", role=res.ROLE_VIEWER)
        iam.CreateMember(pb.CreateMemberRequest(parent="projects/vision", member=member), metadata=metadata)
        secret = iam.CreateToken(pb.CreateTokenRequest(parent="users/alice"), metadata=metadata).secret
        with pytest.raises(grpc.RpcError) as caught:
            iam.CreateUser(pb.CreateUserRequest(user_id="eve"), metadata=(("authorization", f"Bearer {secret}"),))
        assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED

    alice = {"authorization": f"Bearer {secret}"}
    assert httpx.get(f"{base}/projects/vision/datasets", headers=alice).status_code == 200
    write = httpx.post(f"{base}/projects/vision/datasets", params={"datasetId": "d"}, json={}, headers=alice)
    assert write.status_code == 403
    assert "users/alice is only viewer in project 'vision'" in write.json()["error"]["message"]
    members = httpx.get(f"{base}/projects/vision/members", headers=alice).json()["members"]
    assert [m["principal"] for m in members] == ["users/alice"]


def test_the_cli_needs_only_the_gateway_address(
    serve: Callable[[Callable[[], Any]], str], gateway: tuple[str, str, Path], tmp_path: Path
) -> None:
    from services.data.server import build
    from services.data.settings import DataSettings

    door, _, home = gateway
    iam_address = json.loads((home / "run" / "iam.json").read_text())["address"]
    settings = DataSettings(home=home, auth="on", iam_address=iam_address, address_file=home / "run" / "data.json")
    serve(lambda: build(settings))
    source = tmp_path / "src"
    source.mkdir()
    (source / "a.txt").write_text("hello")
    env = {k: v for k, v in os.environ.items() if not k.startswith("ATELIER_")}
    env.update(
        {
            "ATELIER_ADDRESS": door,
            "ATELIER_HOME": str(tmp_path / "elsewhere"),  # no address files here: only the gateway's address
            "ATELIER_TOKEN": read_credentials(home / "credentials")["token"],
        }
    )

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "atelier.cli.main", *args], env=env, capture_output=True, text=True, timeout=60
        )

    assert "users/admin" in cli("whoami").stdout
    pushed = cli("data", "push", str(source), "notes", "--project", "vision", "--json")
    assert pushed.returncode == 0, pushed.stderr
    assert json.loads(pushed.stdout)["version"]["author"] == "admin"
    assert "a.txt" in cli("data", "ls", "vision/notes").stdout
