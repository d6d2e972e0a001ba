"""Artifacts (content-addressed file trees for other services) and pins that keep data in place."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from atelier.client import DataClient
from atelier.datasets.push import push, store_artifact
from atelier.errors import FailedPrecondition, NotFound
from atelier.names import parse_dataset_ref
from tests.integration.data.helpers import write_tree

OWNER = "projects/lab/models/digits/versions/v1"


def test_artifact_is_content_addressed_and_readable(data_client: DataClient, tmp_path: Path) -> None:
    weights = os.urandom(700_000)
    (tmp_path / "model.pt").write_bytes(weights)
    first = store_artifact(data_client, "lab", tmp_path / "model.pt")
    again = store_artifact(data_client, "lab", tmp_path / "model.pt")

    assert first.name == again.name == f"projects/lab/artifacts/{first.digest}"
    assert (first.file_count, first.total_size_bytes) == (1, len(weights))
    assert data_client.get_artifact(f"projects/lab/artifacts/{first.digest[:8]}").name == first.name
    assert [f.path for f in data_client.list_files(first.name)] == ["model.pt"]
    assert b"".join(data_client.read_file(first.name, "model.pt")) == weights
    assert data_client.usage("lab").project.deduplicated_bytes == len(weights)


def test_pinned_artifact_and_version_refuse_deletion(data_client: DataClient, tmp_path: Path) -> None:
    write_tree(tmp_path / "data", {"x.csv": b"1,2\n"})
    version = push(data_client, tmp_path / "data", parse_dataset_ref("digits", "lab")).version
    write_tree(tmp_path / "model", {"model.pt": b"weights"})
    artifact = store_artifact(data_client, "lab", tmp_path / "model")

    pin = data_client.pin("projects/lab/datasets/digits/versions/latest", OWNER)
    assert pin.name.startswith(version.name + "/pins/")
    assert data_client.pin(version.name, OWNER).name == pin.name
    data_client.pin(artifact.name, OWNER)

    with pytest.raises(FailedPrecondition, match=f"referenced by {OWNER}"):
        data_client.delete_version(version.name)
    with pytest.raises(FailedPrecondition, match=f"referenced by {OWNER}"):
        data_client.delete_dataset("projects/lab/datasets/digits")
    with pytest.raises(FailedPrecondition, match=f"referenced by {OWNER}"):
        data_client.delete_artifact(artifact.name)

    assert [p.owner for p in data_client.list_pins(version.name)] == [OWNER]
    data_client.unpin(pin.name)
    data_client.delete_version(version.name)
    data_client.delete_artifact(artifact.name, force=True)
    with pytest.raises(NotFound):
        data_client.get_artifact(artifact.name)
    assert data_client.garbage_collect(grace_seconds=0).freed_bytes >= len(b"weights") + 4


def test_pin_of_unknown_version_is_not_found(data_client: DataClient) -> None:
    data_client.ensure_dataset("lab", "digits")
    with pytest.raises(NotFound):
        data_client.pin("projects/lab/datasets/digits/versions/v7", OWNER)
