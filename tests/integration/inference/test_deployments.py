"""The management API: create, get, list, update (field mask), delete; validation; persistence."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from atelier.client.inference import InferenceClient
from atelier.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound
from atelier.inference.v1 import resources_pb2 as pb
from atelier.registry.v1 import resources_pb2 as registry_pb
from tests.conftest import ServerThread
from tests.integration.inference.conftest import Platform
from tests.integration.inference.models import Affine
from tests.integration.inference.test_errors import refused


@pytest.fixture
def affine(platform: Platform) -> Platform:
    platform.register(Affine(), torch.randn(2, 4), "affine")
    return platform


def test_create_get_list_delete(affine: Platform) -> None:
    created = affine.inference.create("lab", "affine", pb.Deployment(model="affine@latest", description="first"))
    assert created.name == "projects/lab/deployments/affine"
    assert created.model_version == "projects/lab/models/affine/versions/v1"
    assert created.state == pb.DEPLOYMENT_STATE_LOADING
    ready = affine.inference.wait_settled(created.name)
    assert ready.state == pb.DEPLOYMENT_STATE_READY
    # Defaults filled in.
    assert (ready.device, ready.instances, ready.batching.max_batch_size, ready.batching.priority_levels) == (
        "cpu",
        1,
        8,
        1,
    )
    affine.inference.create("lab", "affine-b", pb.Deployment(model="lab/affine@v1"))
    assert [d.name for d in affine.inference.list_deployments("lab")] == [
        "projects/lab/deployments/affine",
        "projects/lab/deployments/affine-b",
    ]
    assert [d.name for d in affine.inference.list_deployments("other")] == []
    affine.inference.delete(created.name)
    with pytest.raises(NotFound, match="deployment projects/lab/deployments/affine not found"):
        affine.inference.get(created.name)
    assert not affine.triton().is_model_ready("affine")


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"device": "gpu"}, "device is 'gpu'; use cpu, cuda or cuda:N"),
        ({"instances": 100}, "instances is 100; use 1 to 64"),
        ({"batching": {"max_batch_size": 4, "preferred_batch_sizes": [8]}}, "batching.preferred_batch_sizes is 8"),
        ({"batching": {"priority_levels": 2, "default_priority": 3}}, "batching.default_priority is 3"),
        ({"queue": {"max_queue_size": -1}}, "queue.max_queue_size is -1"),
    ],
)
def test_bad_settings_are_refused_and_nothing_is_stored(
    affine: Platform, settings: dict[str, Any], message: str
) -> None:
    with pytest.raises(InvalidArgument, match=message.replace("[", r"\[")):
        affine.inference.create("lab", "affine", pb.Deployment(model="affine@latest", **settings))
    assert list(affine.inference.list_deployments("lab")) == []


def test_references_devices_and_names_that_cannot_be_served(affine: Platform) -> None:
    with pytest.raises(NotFound, match="no version lab/affine@production"):
        affine.inference.create("lab", "affine", pb.Deployment(model="affine@production"))
    with pytest.raises(NotFound):
        affine.inference.create("lab", "missing", pb.Deployment(model="missing@latest"))
    with pytest.raises(InvalidArgument, match="deployment.model is required"):
        affine.inference.create("lab", "affine", pb.Deployment())
    if not torch.cuda.is_available():
        with pytest.raises(FailedPrecondition, match="device cuda:0 is not available: this inference server has no"):
            affine.inference.create("lab", "affine", pb.Deployment(model="affine@latest", device="cuda:0"))
    with pytest.raises(InvalidArgument, match="invalid deployment id 'Affine'"):
        affine.inference.create("lab", "Affine", pb.Deployment(model="affine@latest"))
    import atelier

    with atelier.start_run(experiment="affine", capture_code=False) as run:
        weights = run.log_model(Affine(), torch.randn(2, 4), name="affine", format="state_dict")
    with pytest.raises(FailedPrecondition, match="is stored as STATE_DICT, which cannot be served"):
        affine.inference.create("lab", "affine", pb.Deployment(model=f"affine@v{weights.number}"))
    affine.inference.create("lab", "affine", pb.Deployment(model="affine@v1"))
    with pytest.raises(AlreadyExists, match="deployment 'affine' exists already"):
        affine.inference.create("other", "affine", pb.Deployment(model="lab/affine@v1"))


def test_update_with_a_field_mask_reloads_the_model(affine: Platform) -> None:
    first = affine.deploy("affine", "affine@v1")
    second = Affine()
    with torch.no_grad():
        second.linear.bias.add_(10.0)
    affine.register(second, torch.randn(2, 4), "affine")
    first.model = "affine@v2"
    first.description = "ignored: not in the mask"
    updated = affine.inference.update(first, ["model", "batching.max_batch_size"])
    assert updated.state == pb.DEPLOYMENT_STATE_LOADING
    assert updated.description == ""
    ready = affine.inference.wait_settled(first.name)
    assert ready.model_version == "projects/lab/models/affine/versions/v2"
    client = affine.triton()
    x = np.ones((1, 4), dtype=np.float32)
    import tritonclient.grpc as grpcclient

    tensor = grpcclient.InferInput("input", [1, 4], "FP32")
    tensor.set_data_from_numpy(x)
    result = client.infer("affine", [tensor])
    assert result.get_response().model_version == "2"
    with torch.no_grad():
        np.testing.assert_allclose(result.as_numpy("output"), second(torch.from_numpy(x)).numpy(), rtol=1e-6)
    with pytest.raises(InvalidArgument, match="cannot update state; fields are model, device"):
        affine.inference.update(ready, ["state"])
    with pytest.raises(InvalidArgument, match="cannot update batching.size; fields are"):
        affine.inference.update(ready, ["batching.size"])
    with pytest.raises(InvalidArgument, match="update_mask is empty"):
        affine.inference.update(ready, [])


def test_a_sub_field_mask_changes_that_field_only(affine: Platform) -> None:
    deployed = affine.deploy("affine", "affine@v1", batching={"max_batch_size": 8, "preferred_batch_sizes": [2, 4]})
    change = pb.Deployment(name=deployed.name, batching=pb.BatchingPolicy(max_batch_size=16))
    affine.inference.update(change, ["batching.max_batch_size"])
    updated = affine.inference.wait_settled(deployed.name)
    assert updated.batching.max_batch_size == 16
    assert list(updated.batching.preferred_batch_sizes) == [2, 4]
    assert affine.triton().get_model_config("affine").config.max_batch_size == 16
    affine.inference.update(pb.Deployment(name=deployed.name), ["batching"])  # a whole group: its defaults
    assert list(affine.inference.wait_settled(deployed.name).batching.preferred_batch_sizes) == []


def test_a_model_whose_digest_does_not_match_fails_to_load(affine: Platform) -> None:
    registered = affine.registry.get_version("projects/lab/models/affine/versions/v1")
    tampered = registry_pb.ModelVersion()
    tampered.CopyFrom(registered)
    for name in ("name", "number", "aliases", "create_time"):
        tampered.ClearField(name)  # type: ignore[arg-type]
    tampered.artifact_digest = "0" * 64
    affine.registry.create_version("projects/lab/models/affine", tampered)
    created = affine.inference.create("lab", "affine", pb.Deployment(model="affine@v2"))
    failed = affine.inference.wait_settled(created.name)
    assert failed.state == pb.DEPLOYMENT_STATE_FAILED
    assert failed.state_reason.startswith("projects/lab/models/affine/versions/v2: model file digest ")
    assert failed.state_reason.endswith(f"does not match the registered {'0' * 64}")
    status, message = refused(affine, "affine", [])
    assert status == "UNAVAILABLE"
    assert "is not ready: it is FAILED: " in message


def test_a_corrupted_cached_model_is_fetched_again(affine: Platform) -> None:
    version = affine.registry.get_version("projects/lab/models/affine/versions/v1")
    created = affine.inference.create("lab", "affine", pb.Deployment(model="affine@v1"))
    assert affine.inference.wait_settled(created.name).state == pb.DEPLOYMENT_STATE_READY
    cached = next((affine.home / "inference" / "artifacts").iterdir())
    assert cached.name.startswith(version.artifact_digest)
    cached.write_bytes(b"not a model")
    affine.triton().load_model("affine")  # fetched again: the cached file no longer matched its digest
    assert cached.read_bytes() != b"not a model"
    assert affine.triton().is_model_ready("affine")


def test_deployments_survive_a_restart(
    serve: Callable[[Callable[[], Any]], str], tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from services.data.server import build as build_data
    from services.data.settings import DataSettings
    from services.inference.server import build
    from services.inference.settings import InferenceSettings
    from services.registry.server import build as build_registry
    from services.registry.settings import RegistrySettings

    home = tmp_path / "home"
    data = serve(lambda: build_data(DataSettings(home=home)))
    registry = serve(lambda: build_registry(RegistrySettings(home=home, data_address=data)))
    monkeypatch.setenv("ATELIER_DATA_ADDRESS", data)
    monkeypatch.setenv("ATELIER_REGISTRY_ADDRESS", registry)
    monkeypatch.setenv("ATELIER_PROJECT", "lab")
    import atelier

    with atelier.start_run(experiment="affine", capture_code=False) as run:
        run.log_model(Affine(), torch.randn(2, 4), name="affine")
    settings = InferenceSettings(home=home, database_url=database_url, data_address=data, registry_address=registry)
    first = ServerThread(lambda: build(settings))
    client = InferenceClient.at(first.start())
    client.create("lab", "affine", pb.Deployment(model="affine@latest", batching={"max_batch_size": 4}))
    assert client.wait_settled("projects/lab/deployments/affine").state == pb.DEPLOYMENT_STATE_READY
    client.create("lab", "parked", pb.Deployment(model="affine@v1"))
    client.wait_settled("projects/lab/deployments/parked")
    import tritonclient.grpc as grpcclient

    grpcclient.InferenceServerClient(url=client.address).unload_model("parked")
    client.close()
    first.stop()
    second = ServerThread(lambda: build(settings))
    client = InferenceClient.at(second.start())
    try:
        restored = client.wait_settled("projects/lab/deployments/affine")
        assert restored.state == pb.DEPLOYMENT_STATE_READY
        assert restored.batching.max_batch_size == 4
        assert client.get("projects/lab/deployments/parked").state == pb.DEPLOYMENT_STATE_UNLOADED
        outputs = client.infer("affine", {"input": np.ones((2, 4), dtype=np.float32)})
        assert outputs["output"].shape == (2, 3)
    finally:
        client.close()
        second.stop()
