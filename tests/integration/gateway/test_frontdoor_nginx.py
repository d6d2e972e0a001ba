"""nginx in front of the front door: its configuration, its start and restart, and what it refuses."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import grpc
import pytest

from atelier.data.v1 import data_service_pb2 as data_rpc
from atelier.data.v1 import data_service_pb2_grpc as data_grpc
from gateway.frontdoor import FrontDoor
from gateway.frontdoor.nginx import Forward, find_nginx, render
from gateway.upstream import Upstreams
from tests.conftest import ServerThread
from tests.integration.gateway.conftest import NGINX, Stack


@NGINX
def test_the_configuration_is_one_nginx_accepts(tmp_path: Path) -> None:
    forwards = [
        Forward("data", "127.0.0.1:5001", ("/atelier.data.",)),
        Forward("inference", "[::1]:5002", ("/atelier.inference.", "/inference.")),
    ]
    text = render("127.0.0.1:5000", "127.0.0.1:5003", forwards, ["atelier.data.v1.DataService"], tmp_path)
    assert "location /inference. { grpc_pass grpc://svc1_inference;" in text
    assert "location /atelier.data.v1.DataService/ { grpc_pass grpc://front_door; }" in text  # served locally
    assert "the inference service at %5B::1%5D:5002 is unavailable" in text
    (tmp_path / "nginx.conf").write_text(text)
    nginx = find_nginx()
    assert nginx is not None
    checked = subprocess.run(
        [nginx, "-t", "-e", "stderr", "-p", str(tmp_path), "-c", str(tmp_path / "nginx.conf")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert checked.returncode == 0, checked.stderr


@NGINX
def test_nginx_that_exits_is_started_again(stack: Stack, tmp_path: Path) -> None:
    thread = ServerThread(lambda: FrontDoor(Upstreams(tmp_path / "home", stack.addresses), proxy="nginx"))
    address = thread.start()
    try:
        door: FrontDoor = thread.host
        assert door.proxy == "nginx"
        assert door.nginx is not None
        assert door.address != door.inner_address
        first = door.nginx.pid
        assert first is not None
        with grpc.insecure_channel(address) as channel:
            data_grpc.DataServiceStub(channel).ListProjects(data_rpc.ListProjectsRequest(), timeout=10)
        os.kill(first, signal.SIGTERM)  # nginx's fast stop: master and workers go
        deadline = time.monotonic() + 20
        while door.nginx.pid in (first, None) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert door.nginx.pid not in (first, None)
        with grpc.insecure_channel(address) as channel:
            answer = data_grpc.DataServiceStub(channel).ListProjects(
                data_rpc.ListProjectsRequest(), timeout=10, wait_for_ready=True
            )
        assert answer is not None
    finally:
        thread.stop()


def test_a_front_door_told_to_use_an_nginx_it_cannot_find_says_so(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="ATELIER_GATEWAY_FRONT_DOOR_PROXY=python"):
        FrontDoor(Upstreams(tmp_path), proxy="nginx", nginx_binary=str(tmp_path / "no-nginx"))
    with pytest.raises(ValueError, match="python, nginx, auto"):
        FrontDoor(Upstreams(tmp_path), proxy="envoy")
    assert FrontDoor(Upstreams(tmp_path), proxy="auto", nginx_binary=str(tmp_path / "no-nginx")).proxy == "python"


@NGINX
def test_a_port_another_process_holds_is_an_error_not_a_start(tmp_path: Path) -> None:
    """The other process accepts connections on the port: nginx's start is judged by its own pid file."""
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        thread = ServerThread(lambda: FrontDoor(Upstreams(tmp_path), port=port, proxy="nginx"))
        with pytest.raises(RuntimeError, match="nginx did not start as the front door: .*Address already in use"):
            thread.start()
        thread.stop()
