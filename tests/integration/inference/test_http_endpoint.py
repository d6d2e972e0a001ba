"""The REST endpoint's own lifecycle: a free port bound at start, and a stop that does not wait
forever for a request that would never finish (one waiting for a batch to fill, say)."""

from __future__ import annotations

import asyncio
import socket
import urllib.error
import urllib.request

import pytest
from fastapi import FastAPI

from services.inference.http import HttpEndpoint


def fetch(address: str, path: str) -> int:
    with urllib.request.urlopen(f"http://{address}{path}", timeout=60) as response:
        return int(response.status)


def test_stop_cancels_a_request_still_waiting_after_the_grace_period() -> None:
    async def scenario() -> tuple[str, BaseException | int]:
        app = FastAPI()
        entered = asyncio.Event()

        @app.get("/ok")
        async def ok() -> dict[str, str]:
            return {}

        @app.get("/forever")
        async def forever() -> None:
            entered.set()
            await asyncio.Event().wait()

        endpoint = HttpEndpoint(app, "127.0.0.1", 0, grace_seconds=1)
        address = await endpoint.start()
        loop = asyncio.get_running_loop()
        assert await loop.run_in_executor(None, fetch, address, "/ok") == 200
        waiting = loop.run_in_executor(None, fetch, address, "/forever")
        await entered.wait()
        await endpoint.stop()
        outcome: BaseException | int
        try:
            outcome = await waiting
        except Exception as error:  # noqa: BLE001 - what the client saw is the point
            outcome = error
        return address, outcome

    address, outcome = asyncio.run(scenario())
    # The request did not complete normally, and nothing listens on the port any more.
    assert isinstance(outcome, urllib.error.URLError | ConnectionError | OSError), outcome
    host, port = address.rsplit(":", 1)
    with pytest.raises(ConnectionRefusedError), socket.create_connection((host, int(port)), timeout=5):
        pass


def test_connections_send_without_waiting_for_acks() -> None:
    """TCP_NODELAY on every accepted connection: uvicorn writes the headers and the body separately, and
    with Nagle's algorithm the body waited for the client's delayed ACK (~40 ms per response)."""

    async def scenario() -> list[int]:
        app = FastAPI()
        options: list[int] = []

        @app.get("/nodelay")
        async def nodelay() -> dict[str, str]:
            return {}

        endpoint = HttpEndpoint(app, "127.0.0.1", 0)
        address = await endpoint.start()
        loop = asyncio.get_running_loop()
        assert await loop.run_in_executor(None, fetch, address, "/nodelay") == 200
        host, port = address.rsplit(":", 1)
        with socket.create_connection((host, int(port)), timeout=5):
            await asyncio.sleep(0.2)  # the server accepts it
            assert endpoint._server is not None
            for connection in endpoint._server.server_state.connections:
                sock = connection.transport.get_extra_info("socket")
                options.append(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
        await endpoint.stop()
        return options

    options = asyncio.run(scenario())
    assert options
    assert all(options), options
