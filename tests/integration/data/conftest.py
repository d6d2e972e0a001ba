"""A data service per test, over each database and each object store backend."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from atelier.client import DataClient


@pytest.fixture(params=["local", "s3"])
def object_store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "local":
        return str(tmp_path / "objects")
    endpoint = request.getfixturevalue("s3_endpoint")
    return f"s3://testing:testing@{endpoint}/atelier-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def data_settings(tmp_path: Path, database_url: str) -> Any:
    from services.data.settings import DataSettings

    return DataSettings(
        home=tmp_path / "home",
        database_url=database_url,
        object_store=str(tmp_path / "objects"),
        pack_target_bytes=1024 * 1024,
        shutdown_grace_seconds=1,
    )


@pytest.fixture
def data_client(serve: Callable[[Callable[[], Any]], str], data_settings: Any) -> Iterator[DataClient]:
    """A client of a data service on SQLite and on PostgreSQL (local object store)."""
    from services.data.server import build

    address = serve(lambda: build(data_settings))
    client = DataClient.at(address)
    yield client
    client.close()
