"""kill -9 of the data service in the middle of a push, then a resumed push that completes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from atelier.client import DataClient
from atelier.datasets.pull import pull
from atelier.datasets.push import push
from atelier.errors import NotFound
from atelier.names import parse_dataset_ref
from tests.integration.data.helpers import random_tree, read_tree

pytestmark = pytest.mark.timeout(180)


def start_service(home: Path) -> tuple[subprocess.Popen[bytes], str]:
    address_file = home / "run" / "data.json"
    address_file.unlink(missing_ok=True)
    env = {
        **os.environ,
        "ATELIER_HOME": str(home),
        "ATELIER_DATA_ADDRESS_FILE": str(address_file),
        "ATELIER_DATA_PACK_TARGET_BYTES": str(1024 * 1024),
    }
    log = open(home / "data.log", "ab")  # noqa: SIM115 - lives as long as the process
    process = subprocess.Popen([sys.executable, "-m", "services.data"], env=env, stdout=log, stderr=log)
    for _ in range(300):
        if address_file.exists():
            return process, json.loads(address_file.read_text())["address"]
        if process.poll() is not None:
            raise AssertionError((home / "data.log").read_text())
        time.sleep(0.05)
    raise AssertionError("data service did not start")


def test_push_survives_kill_9_and_resumes(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    files = random_tree(tmp_path / "src", count=40, size=1_500_000)
    total = sum(len(v) for v in files.values())
    server, address = start_service(home)
    env = {**os.environ, "ATELIER_HOME": str(home), "ATELIER_DATA_ADDRESS": address}
    pusher = subprocess.Popen(
        [sys.executable, "-m", "atelier.cli.main", "data", "push", str(tmp_path / "src"), "ds", "--json"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    packs = home / "objects" / "packs"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and len(list(packs.glob("*"))) < 5:
        time.sleep(0.01)
    server.send_signal(signal.SIGKILL)
    server.wait()
    _, stderr = pusher.communicate(timeout=60)
    assert pusher.returncode == 1
    assert stderr.decode().startswith("error:"), stderr.decode()
    assert "Traceback" not in stderr.decode()

    server, address = start_service(home)
    try:
        client = DataClient.at(address)
        with pytest.raises(NotFound, match="no versions yet"):
            client.get_version("projects/default/datasets/ds/versions/latest")
        resumed = push(client, tmp_path / "src", parse_dataset_ref("ds", "default"))
        assert resumed.created
        assert resumed.sent_bytes < total
        pull(client, parse_dataset_ref("ds@v1", "default"), tmp_path / "out")
        assert read_tree(tmp_path / "out") == files
    finally:
        server.terminate()
        server.wait(30)
