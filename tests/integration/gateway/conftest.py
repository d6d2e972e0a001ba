"""Data, registry and scheduler in-process, and the gateway in front of them (FastAPI's TestClient)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from atelier.client import DataClient, RegistryClient
from atelier.client.scheduler import AgentClient, SchedulerClient
from gateway.app import create_app
from gateway.frontdoor.nginx import find_nginx
from gateway.settings import GatewaySettings
from gateway.upstream import Upstreams


@dataclass
class Stack:
    rest: TestClient
    data: DataClient
    registry: RegistryClient
    scheduler: SchedulerClient
    agents: AgentClient
    addresses: dict[str, str]


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        provider = TracerProvider()
        trace.set_tracer_provider(provider)
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield exporter
    exporter.shutdown()


@pytest.fixture
def stack(serve: Callable[[Callable[[], Any]], str], tmp_path: Path) -> Iterator[Stack]:
    from services.data.server import build as build_data
    from services.data.settings import DataSettings
    from services.registry.server import build as build_registry
    from services.registry.settings import RegistrySettings
    from services.scheduler.server import build as build_scheduler
    from services.scheduler.settings import SchedulerSettings

    home = tmp_path / "home"
    data = serve(lambda: build_data(DataSettings(home=home)))
    registry_settings = RegistrySettings(
        home=home, database_url=f"sqlite:///{tmp_path / 'registry.db'}", data_address=data
    )
    registry = serve(lambda: build_registry(registry_settings))
    scheduler_settings = SchedulerSettings(
        home=home, database_url=f"sqlite:///{tmp_path / 'scheduler.db'}", data_address=data
    )
    scheduler = serve(lambda: build_scheduler(scheduler_settings))
    addresses = {"data": data, "registry": registry, "scheduler": scheduler, "inference": "127.0.0.1:1"}
    app = create_app(GatewaySettings(home=home), Upstreams(home, addresses))
    with TestClient(app, raise_server_exceptions=False) as rest:
        made = Stack(
            rest,
            DataClient.at(data),
            RegistryClient.at(registry),
            SchedulerClient.at(scheduler),
            AgentClient.at(scheduler),
            addresses,
        )
        yield made
    for client in (made.data, made.registry, made.scheduler, made.agents):
        client.close()


OpenDoor = Callable[..., str]


NGINX = pytest.mark.skipif(find_nginx() is None, reason="nginx is not installed (make services)")


@pytest.fixture(params=["python", pytest.param("nginx", marks=NGINX)])
def proxy(request: pytest.FixtureRequest) -> str:
    """What serves the front door's port: the Python front door alone, or nginx in front of it."""
    return str(request.param)


@pytest.fixture
def open_door(serve: Callable[[Callable[[], Any]], str], tmp_path: Path, proxy: str) -> OpenDoor:
    """Start a gRPC front door in-process for services at `addresses`; returns its address."""
    from gateway.frontdoor import FrontDoor

    def start(addresses: dict[str, str], **options: Any) -> str:
        options.setdefault("proxy", proxy)
        return serve(lambda: FrontDoor(Upstreams(tmp_path / "home", addresses), **options))

    return start


@pytest.fixture
def door(stack: Stack, open_door: OpenDoor) -> str:
    """The front door of the stack fixture's services (inference down, monitor without an address)."""
    return open_door(stack.addresses)
