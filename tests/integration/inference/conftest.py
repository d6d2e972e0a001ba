"""A data service, a registry and an inference service in-process; models registered as a training
script would (start_run + log_model), deployed through the management API, called with tritonclient."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import atelier
from atelier.client import DataClient, RegistryClient
from atelier.client.inference import InferenceClient
from atelier.inference.v1 import resources_pb2 as pb
from atelier.registry.v1 import resources_pb2 as registry_pb


@dataclass
class Platform:
    data: DataClient
    registry: RegistryClient
    inference: InferenceClient
    address: str
    home: Path

    def register(self, module: Any, example: Any, name: str, format: str = "torchscript") -> registry_pb.ModelVersion:
        with atelier.start_run(experiment=name, capture_code=False) as run:
            return run.log_model(module, example, name=name, format=format)

    def deploy(self, deployment_id: str, model: str, **settings: Any) -> pb.Deployment:
        """Create a deployment (settings as in pb.Deployment) and wait until it is READY."""
        created = self.inference.create("lab", deployment_id, pb.Deployment(model=model, **settings))
        settled = self.inference.wait_settled(created.name)
        assert settled.state == pb.DEPLOYMENT_STATE_READY, settled.state_reason
        return settled

    def triton(self) -> Any:
        import tritonclient.grpc as grpcclient

        return grpcclient.InferenceServerClient(url=self.address)


def start_inference(
    serve: Callable[[Callable[[], Any]], str], home: Path, data: str, registry: str, **extra: Any
) -> str:
    from services.inference.server import build
    from services.inference.settings import InferenceSettings

    settings = InferenceSettings(home=home, data_address=data, registry_address=registry, **extra)
    return serve(lambda: build(settings))


@pytest.fixture
def platform(
    serve: Callable[[Callable[[], Any]], str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Platform]:
    from services.data.server import build as build_data
    from services.data.settings import DataSettings
    from services.registry.server import build as build_registry
    from services.registry.settings import RegistrySettings

    home = tmp_path / "home"
    data = serve(lambda: build_data(DataSettings(home=home)))
    registry = serve(lambda: build_registry(RegistrySettings(home=home, data_address=data)))
    address = start_inference(serve, home, data, registry, max_tensor_bytes=1 << 20)
    monkeypatch.setenv("ATELIER_DATA_ADDRESS", data)
    monkeypatch.setenv("ATELIER_REGISTRY_ADDRESS", registry)
    monkeypatch.setenv("ATELIER_PROJECT", "lab")
    made = Platform(DataClient.at(data), RegistryClient.at(registry), InferenceClient.at(address), address, home)
    yield made
    for client in (made.data, made.registry, made.inference):
        client.close()
