"""A monitor service in-process, on SQLite and on PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from atelier.client.monitor import MonitorClient


@pytest.fixture
def monitor(serve: Callable[[Callable[[], Any]], str], tmp_path: Path, database_url: str) -> Iterator[MonitorClient]:
    from services.monitor.server import build
    from services.monitor.settings import MonitorSettings

    client = MonitorClient.at(serve(lambda: build(MonitorSettings(home=tmp_path, database_url=database_url))))
    yield client
    client.close()
