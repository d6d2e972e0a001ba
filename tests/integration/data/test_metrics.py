"""The data service's Prometheus series: bytes stored per project, bytes pushed and pulled."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from atelier.client import DataClient
from atelier.datasets.pull import pull
from atelier.datasets.push import push
from atelier.names import parse_dataset_ref
from tests.integration.data.helpers import write_tree
from tests.prometheus import scrape, value


def test_storage_and_transfers_are_exported(
    serve: Callable[[Callable[[], Any]], str], data_settings: Any, tmp_path: Path
) -> None:
    from services.data.server import build

    settings = data_settings.model_copy(update={"address_file": tmp_path / "data.json"})
    client = DataClient.at(serve(lambda: build(settings)))
    content = os.urandom(10_000)
    write_tree(tmp_path / "src", {"a": content, "copy-of-a": content})
    push(client, tmp_path / "src", parse_dataset_ref("ds", "lab"))
    write_tree(tmp_path / "src", {"b": os.urandom(5_000)})
    push(client, tmp_path / "src", parse_dataset_ref("ds", "lab"))
    client.create_project("empty")
    pull(client, parse_dataset_ref("ds@v1", "lab"), tmp_path / "out")

    samples = scrape(json.loads((tmp_path / "data.json").read_text())["metrics"])
    assert value(samples, "atelier_data_project_bytes", project="lab", kind="logical") == 20_000 + 25_000
    assert value(samples, "atelier_data_project_bytes", project="lab", kind="deduplicated") == 15_000
    assert value(samples, "atelier_data_versions", project="lab") == 2
    assert value(samples, "atelier_data_versions", project="empty") == 0
    # File bytes plus the small manifests; the copy of `a` is sent once.
    received = value(samples, "atelier_data_received_bytes_total", project="lab")
    assert 15_000 < received < 16_000
    assert value(samples, "atelier_data_stored_new_bytes_total", project="lab") == received
    assert value(samples, "atelier_data_sent_bytes_total", project="lab") >= 10_000
    assert value(samples, "grpc_server_handled_total", grpc_method="CreateVersion", grpc_code="OK") == 2
    client.close()
