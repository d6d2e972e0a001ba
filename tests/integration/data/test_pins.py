"""BatchCreatePins: many pins in one call, each target resolved to its canonical name, all or none."""

from __future__ import annotations

from pathlib import Path

import pytest

from atelier.client import DataClient
from atelier.data.v1 import data_service_pb2 as rpc
from atelier.data.v1 import resources_pb2 as pb
from atelier.datasets.push import push, store_artifact
from atelier.errors import InvalidArgument, NotFound
from atelier.names import parse_dataset_ref
from tests.integration.data.helpers import write_tree

V1 = "projects/lab/models/digits/versions/v1"
V2 = "projects/lab/models/digits/versions/v2"


def _batch(client: DataClient, project: str, pairs: list[tuple[str, str]]) -> list[pb.Pin]:
    requests = [rpc.CreatePinRequest(parent=target, pin=pb.Pin(owner=owner)) for target, owner in pairs]
    request = rpc.BatchCreatePinsRequest(parent=f"projects/{project}", requests=requests)
    return list(client.call(client.stub.BatchCreatePins, request).pins)


@pytest.fixture
def targets(data_client: DataClient, tmp_path: Path) -> tuple[str, str]:
    """A dataset version and an artifact of project `lab`."""
    write_tree(tmp_path / "data", {"x.csv": b"1,2\n"})
    version = push(data_client, tmp_path / "data", parse_dataset_ref("digits", "lab")).version
    write_tree(tmp_path / "model", {"model.pt": b"weights"})
    artifact = store_artifact(data_client, "lab", tmp_path / "model")
    return version.name, artifact.name


def test_a_batch_resolves_references_and_reuses_pins(data_client: DataClient, targets: tuple[str, str]) -> None:
    version, artifact = targets
    short = artifact[: artifact.rindex("/") + 9]
    existing = data_client.pin(version, V1)

    pins = _batch(
        data_client,
        "lab",
        [
            ("projects/lab/datasets/digits/versions/latest", V1),
            (artifact, V1),
            (short, V1),
            (version, V2),
            (artifact, V2),
            (version, V2),
        ],
    )

    names = [p.name for p in pins]
    assert names[0] == existing.name
    assert [n.rpartition("/pins/")[0] for n in names] == [version, artifact, artifact, version, artifact, version]
    assert names[1] == names[2]
    assert names[3] == names[5]
    assert len(set(names)) == 4
    assert [p.owner for p in pins] == [V1, V1, V1, V2, V2, V2]
    assert sorted(p.owner for p in data_client.list_pins(version)) == [V1, V2]
    assert sorted(p.owner for p in data_client.list_pins(artifact)) == [V1, V2]
    assert [p.name for p in _batch(data_client, "lab", [(artifact, V2), (version, V1)])] == [names[4], names[0]]


def test_a_refused_batch_pins_nothing(data_client: DataClient, targets: tuple[str, str]) -> None:
    version, artifact = targets
    with pytest.raises(NotFound, match="v9"):
        _batch(data_client, "lab", [(artifact, V1), ("projects/lab/datasets/digits/versions/v9", V1)])
    with pytest.raises(InvalidArgument, match=r"is not in projects/other"):
        _batch(data_client, "other", [(version, V1)])
    with pytest.raises(InvalidArgument, match="pin.owner is required"):
        _batch(data_client, "lab", [(version, V1), (artifact, "")])
    assert data_client.list_pins(version) == []
    assert data_client.list_pins(artifact) == []


def test_a_batch_under_projects_dash_pins_in_several_projects(
    data_client: DataClient, targets: tuple[str, str], tmp_path: Path
) -> None:
    version, artifact = targets
    write_tree(tmp_path / "shared", {"y.csv": b"3,4\n"})
    shared = push(data_client, tmp_path / "shared", parse_dataset_ref("pool", "shared")).version.name
    pins = _batch(data_client, "-", [(artifact, V1), (shared, V1)])
    assert [p.name.rpartition("/pins/")[0] for p in pins] == [artifact, shared]
    assert [p.owner for p in data_client.list_pins(shared)] == [V1]
    assert data_client.list_pins(version) == []
