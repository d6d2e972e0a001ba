"""BatchCreateModelVersions: many versions in one call, in order, all or none, pinned like one."""

from __future__ import annotations

from pathlib import Path

import pytest

from atelier.client import DataClient, RegistryClient
from atelier.datasets.push import store_artifact
from atelier.errors import FailedPrecondition, InvalidArgument, NotFound
from atelier.registry.v1 import registry_service_pb2 as rpc
from atelier.registry.v1 import resources_pb2 as pb

MODEL = "projects/lab/models/sweep"


@pytest.fixture
def artifact(stack: tuple[DataClient, RegistryClient], tmp_path: Path) -> str:
    (tmp_path / "weights.pt").write_bytes(b"sweep weights")
    return store_artifact(stack[0], "lab", tmp_path / "weights.pt").name


def version(artifact: str, accuracy: float, dataset: str = "digits@v1") -> pb.ModelVersion:
    return pb.ModelVersion(
        artifact=artifact,
        format=pb.MODEL_FORMAT_TORCHSCRIPT,
        metrics={"val_accuracy": accuracy},
        lineage=pb.Lineage(datasets=[dataset], params={"lr": str(accuracy / 100)}),
    )


def test_versions_are_created_in_request_order_and_their_lineage_pinned(
    stack: tuple[DataClient, RegistryClient], artifact: str, digits: str
) -> None:
    data, registry = stack
    accuracies = [0.5, 0.9, 0.7, 0.8]

    created = registry.create_versions(MODEL, [version(artifact, a) for a in accuracies])

    assert [v.number for v in created] == [1, 2, 3, 4]
    assert [v.metrics["val_accuracy"] for v in created] == pytest.approx(accuracies)
    assert all(list(v.lineage.datasets) == [digits] for v in created)
    assert [registry.get_version(v.name) for v in created] == created
    best = registry.best_version(MODEL, "val_accuracy", filter="params.lr < 0.0075")
    assert best is not None
    assert best.name == f"{MODEL}/versions/v3"
    owners = {pin.owner for pin in data.list_pins(digits)}
    assert owners == {v.name for v in created}
    assert {pin.owner for pin in data.list_pins(artifact)} == owners
    with pytest.raises(FailedPrecondition, match=f"referenced by {MODEL}/versions/v"):
        data.delete_version(digits)
    # A single registration afterwards takes the next number.
    assert registry.create_version(MODEL, version(artifact, 0.6)).number == 5


def test_one_bad_request_fails_the_batch_naming_its_index_and_nothing_is_written(
    stack: tuple[DataClient, RegistryClient], artifact: str, digits: str
) -> None:
    data, registry = stack
    good = [version(artifact, 0.5), version(artifact, 0.6)]
    no_format = pb.ModelVersion(artifact=artifact)
    unknown_dataset = version(artifact, 0.7, dataset="digits@v9")
    unknown_artifact = version("projects/lab/artifacts/" + "a" * 64, 0.8)

    with pytest.raises(InvalidArgument, match=r"^requests\[1\]: model_version.format 0 is not one of") as raised:
        registry.create_versions(MODEL, [good[0], no_format, good[1]])
    assert raised.value.metadata["field"] == "requests[1].model_version.format"
    with pytest.raises(FailedPrecondition, match=r"^requests\[2\]: unknown dataset version 'digits@v9'"):
        registry.create_versions(MODEL, [*good, unknown_dataset])
    with pytest.raises(FailedPrecondition, match=r"^requests\[0\]: unknown artifact"):
        registry.create_versions(MODEL, [unknown_artifact, *good])

    with pytest.raises(NotFound, match="model 'sweep' not found"):
        registry.get_model(MODEL)
    assert data.list_pins(digits) == []
    assert data.list_pins(artifact) == []
    data.delete_version(digits)


def test_batch_size_and_parents_are_checked(stack: tuple[DataClient, RegistryClient], artifact: str) -> None:
    _, registry = stack
    with pytest.raises(InvalidArgument, match="requests holds 0 versions; a batch holds 1 to 1000"):
        registry.create_versions(MODEL, [])
    bare = pb.ModelVersion(artifact=artifact, format=pb.MODEL_FORMAT_TORCHSCRIPT)
    with pytest.raises(InvalidArgument, match="requests holds 1001 versions; a batch holds 1 to 1000"):
        registry.create_versions(MODEL, [bare] * 1001)
    requests = [
        rpc.CreateModelVersionRequest(parent=MODEL, model_version=bare),
        rpc.CreateModelVersionRequest(parent="projects/lab/models/other", model_version=bare),
    ]
    request = rpc.BatchCreateModelVersionsRequest(parent=MODEL, requests=requests)
    with pytest.raises(InvalidArgument, match=r"requests\[1\]\.parent is 'projects/lab/models/other'") as raised:
        registry.call(registry.stub.BatchCreateModelVersions, request)
    assert raised.value.metadata["field"] == "requests[1].parent"

    # The largest batch goes through, with each request's parent empty or the batch's.
    requests = [rpc.CreateModelVersionRequest(parent=MODEL if i % 2 else "", model_version=bare) for i in range(1000)]
    request = rpc.BatchCreateModelVersionsRequest(parent=MODEL, requests=requests)
    created = registry.call(registry.stub.BatchCreateModelVersions, request).model_versions
    assert [v.number for v in created] == list(range(1, 1001))
