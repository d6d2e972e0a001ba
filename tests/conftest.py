"""Fixtures shared by the whole suite: databases (SQLite and the real PostgreSQL), an S3-protocol
server (moto), and Atelier services run in-process on 127.0.0.1:0."""

from __future__ import annotations

import asyncio
import os
import tempfile
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

# Pushes remember files in a per-user state cache; the suite keeps its own, away from the user's.
os.environ["XDG_CACHE_HOME"] = tempfile.mkdtemp(prefix="atelier-test-cache-")

PG_ADMIN = os.environ.get("ATELIER_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")


def _pg_url(database: str) -> str:
    base, _, _ = PG_ADMIN.rpartition("/")
    return f"{base}/{database}"


@pytest.fixture(scope="session")
def postgres_available() -> None:
    """Fail (never skip) when the PostgreSQL server the suite needs is not running."""
    try:
        with psycopg.connect(PG_ADMIN, connect_timeout=5):
            pass
    except psycopg.OperationalError as error:
        pytest.fail(f"PostgreSQL is required at {PG_ADMIN} (run `make services`): {error}")


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The same test against SQLite and against a fresh PostgreSQL database."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'test.db'}"
        return
    request.getfixturevalue("postgres_available")
    name = f"atelier_{uuid.uuid4().hex[:16]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield _pg_url(name)
    finally:
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """A real S3-protocol server (moto) on 127.0.0.1, for the whole session."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"{host}:{port}"
    finally:
        server.stop()


class ServerThread:
    """Runs a ServiceHost's asyncio loop on a background thread."""

    def __init__(self, factory: Callable[[], Any]) -> None:
        self._factory = factory
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self.host: Any = None
        self.address = ""

    def start(self) -> str:
        self._thread.start()

        async def start() -> str:
            self.host = self._factory()
            return str(await self.host.start())

        self.address = asyncio.run_coroutine_threadsafe(start(), self._loop).result(60)
        return self.address

    def submit(self, coroutine: Any) -> Any:
        """Run a coroutine on the server's loop; returns a concurrent Future."""
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop)

    def stop(self) -> None:
        if self.host is not None:
            asyncio.run_coroutine_threadsafe(self.host.stop(), self._loop).result(60)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)


@pytest.fixture
def serve() -> Iterator[Callable[[Callable[[], Any]], str]]:
    """Start ServiceHosts in-process; they are stopped when the test ends."""
    started: list[ServerThread] = []

    def start(factory: Callable[[], Any]) -> str:
        thread = ServerThread(factory)
        started.append(thread)
        return thread.start()

    yield start
    for thread in reversed(started):
        thread.stop()
