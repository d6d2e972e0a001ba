"""A data service, a registry and an inference service in-process; models registered as a training
script would (start_run + log_model), deployed through the management API, called with tritonclient."""

from __future__ import annotations

import subprocess
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
from atelier.stack.addresses import PublishedAddress, address_file, read_address_file


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

    def published(self) -> PublishedAddress:
        """What the inference service wrote to its address file (its gRPC, metrics and HTTP addresses)."""
        published = read_address_file(address_file(self.home, "inference"))
        assert published is not None
        return published

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


def start_data_and_registry(serve: Callable[[Callable[[], Any]], str], home: Path) -> tuple[str, str]:
    """A data service and a registry in-process on `home`: their addresses."""
    from services.data.server import build as build_data
    from services.data.settings import DataSettings
    from services.registry.server import build as build_registry
    from services.registry.settings import RegistrySettings

    data = serve(lambda: build_data(DataSettings(home=home)))
    return data, serve(lambda: build_registry(RegistrySettings(home=home, data_address=data)))


@pytest.fixture
def platform(
    serve: Callable[[Callable[[], Any]], str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Platform]:
    home = tmp_path / "home"
    data, registry = start_data_and_registry(serve, home)
    address = start_inference(
        serve,
        home,
        data,
        registry,
        max_tensor_bytes=1 << 20,
        alias_poll_seconds=0.2,
        address_file=address_file(home, "inference"),
    )
    monkeypatch.setenv("ATELIER_DATA_ADDRESS", data)
    monkeypatch.setenv("ATELIER_REGISTRY_ADDRESS", registry)
    monkeypatch.setenv("ATELIER_PROJECT", "lab")
    made = Platform(DataClient.at(data), RegistryClient.at(registry), InferenceClient.at(address), address, home)
    yield made
    for client in (made.data, made.registry, made.inference):
        client.close()


class Stream:
    """A tritonclient ModelStreamInfer stream whose responses (or errors) arrive on a queue by id."""

    def __init__(self, client: Any) -> None:
        import queue

        self.client = client
        self.received: queue.Queue[tuple[str, Any, Any]] = queue.Queue()

        def callback(result: Any, error: Any) -> None:
            if error is not None:
                self.received.put(("", None, error))
            else:
                self.received.put((result.get_response().id, result, None))

        client.start_stream(callback=callback)

    def send(self, model: str, inputs: list[Any], request_id: str, **options: Any) -> None:
        self.client.async_stream_infer(model, inputs, request_id=request_id, **options)

    def next(self, timeout: float = 60.0) -> tuple[str, Any, Any]:
        return self.received.get(timeout=timeout)

    def pending(self) -> bool:
        return not self.received.empty()

    def close(self) -> None:
        self.client.stop_stream()


def register_scripted(platform: Platform, module: Any, name: str, signature: registry_pb.ModelSignature) -> Any:
    """Register a scripted TorchScript module with an explicit signature (e.g. dynamic non-batch dims)."""
    import torch

    from atelier.datasets.pull import file_digest
    from atelier.datasets.push import store_artifact

    path = platform.home / f"{name}.pt"
    torch.jit.script(module).save(str(path))
    with atelier.start_run(experiment=name, capture_code=False) as run:
        artifact = store_artifact(platform.data, "lab", path)
        version = registry_pb.ModelVersion(
            artifact=artifact.name,
            artifact_digest=file_digest(path),
            format=registry_pb.MODEL_FORMAT_TORCHSCRIPT,
            signature=signature,
            lineage=registry_pb.Lineage(run=run.name),
        )
        return platform.registry.create_version(f"projects/lab/models/{name}", version)


class EnvoyPlatform(Platform):
    process: subprocess.Popen[bytes]
    published_at_start: PublishedAddress


@pytest.fixture
def envoy_variables() -> dict[str, str]:
    """Environment variables the service behind Envoy gets besides the platform's (a module may override)."""
    return {}


@pytest.fixture
def envoy_platform(
    serve: Callable[[Callable[[], Any]], str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    envoy_variables: dict[str, str],
) -> Iterator[EnvoyPlatform]:
    """The service as `python -m services.inference` starts it (behind Envoy), beside an in-process data
    service and registry."""
    from tests.integration.inference.envoy_process import inference_in_envoy

    home = tmp_path / "home"
    data, registry = start_data_and_registry(serve, home)
    settings = {
        "ATELIER_INFERENCE_DATA_ADDRESS": data,
        "ATELIER_INFERENCE_REGISTRY_ADDRESS": registry,
        "ATELIER_INFERENCE_ALIAS_POLL_SECONDS": "0.2",
        "ATELIER_INFERENCE_DRIFT_SAMPLE_RATE": "0",
        **envoy_variables,
    }
    with inference_in_envoy(home, tmp_path / "inference.log", **settings) as (process, address):
        monkeypatch.setenv("ATELIER_DATA_ADDRESS", data)
        monkeypatch.setenv("ATELIER_REGISTRY_ADDRESS", registry)
        monkeypatch.setenv("ATELIER_PROJECT", "lab")
        made = EnvoyPlatform(
            DataClient.at(data), RegistryClient.at(registry), InferenceClient.at(address.address), address.address, home
        )
        made.process, made.published_at_start = process, address
        yield made
        for client in (made.data, made.registry, made.inference):
            client.close()
