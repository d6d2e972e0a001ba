"""What a commit charges its project: the bytes of chunks new to it, counted once across versions and
datasets; a refused commit charges nothing. Run with the charge read on the session's connection and
read beside the insert on a connection of its own (as SQLite does for big commits)."""

from __future__ import annotations

import pytest

from atelier.client import DataClient
from atelier.errors import FailedPrecondition, ResourceExhausted
from tests.integration.data.helpers import commit_raw


@pytest.fixture(autouse=True, params=["in the session", "beside the insert"])
def charge_reading(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    if request.param == "beside the insert":
        monkeypatch.setattr("services.data.store._READ_BESIDE", 1)


def stored(client: DataClient, project: str) -> int:
    return client.usage(project).project.deduplicated_bytes


def test_chunks_are_charged_once_per_project(data_client: DataClient) -> None:
    for dataset in ("a", "b"):
        data_client.ensure_dataset("lab", dataset)
    data_client.ensure_dataset("other", "a")
    v1 = commit_raw(data_client, "lab", "a", [("x", b"x" * 100), ("y", b"y" * 200)])
    assert stored(data_client, "lab") == 300
    commit_raw(data_client, "lab", "a", [("x", b"x" * 100), ("z", b"z" * 50)], parent=v1.name)
    assert stored(data_client, "lab") == 350  # x was charged already
    commit_raw(data_client, "lab", "b", [("copy", b"y" * 200), ("w", b"w" * 7)])
    assert stored(data_client, "lab") == 357  # so was y, in another dataset
    commit_raw(data_client, "other", "a", [("x", b"x" * 100)])
    assert stored(data_client, "other") == 100  # another project pays for its own


def test_a_refused_commit_charges_nothing(data_client: DataClient) -> None:
    data_client.create_project("small", quota_bytes=1_000)
    data_client.ensure_dataset("small", "a")
    v1 = commit_raw(data_client, "small", "a", [("x", b"x" * 600)])
    with pytest.raises(ResourceExhausted, match="this version adds 500 bytes to 600 stored, quota is 1000 bytes"):
        commit_raw(data_client, "small", "a", [("x", b"x" * 600), ("y", b"y" * 500)], parent=v1.name)
    with pytest.raises(FailedPrecondition, match="1 chunk"):
        commit_raw(data_client, "small", "a", [("n", b"never sent"), ("x", b"x" * 600)], parent=v1.name, upload=False)
    assert stored(data_client, "small") == 600
    v2 = commit_raw(data_client, "small", "a", [("x", b"x" * 600), ("y", b"y" * 400)], parent=v1.name)
    assert v2.name.endswith("/v2")
    assert stored(data_client, "small") == 1_000
