"""A data service and a registry in-process, on each database."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from atelier.client import DataClient, RegistryClient
from atelier.datasets.push import push
from atelier.names import parse_dataset_ref
from tests.integration.data.helpers import write_tree


@pytest.fixture
def stack(
    serve: Callable[[Callable[[], Any]], str], tmp_path: Path, database_url: str
) -> Iterator[tuple[DataClient, RegistryClient]]:
    from services.data.server import build as build_data
    from services.data.settings import DataSettings
    from services.registry.server import build as build_registry
    from services.registry.settings import RegistrySettings

    data_address = serve(lambda: build_data(DataSettings(home=tmp_path / "home")))
    registry_settings = RegistrySettings(
        home=tmp_path / "home",
        database_url=database_url,
        data_address=data_address,
        address_file=tmp_path / "home" / "run" / "registry.json",
    )
    registry_address = serve(lambda: build_registry(registry_settings))
    data, registry = DataClient.at(data_address), RegistryClient.at(registry_address)
    yield data, registry
    data.close()
    registry.close()


@pytest.fixture
def digits(stack: tuple[DataClient, RegistryClient], tmp_path: Path) -> str:
    """Version v1 of dataset lab/digits."""
    write_tree(tmp_path / "digits", {"labels.csv": b"a,1\n"})
    return push(stack[0], tmp_path / "digits", parse_dataset_ref("digits", "lab")).version.name
