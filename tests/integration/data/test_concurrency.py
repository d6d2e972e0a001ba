"""Concurrent pushes to one dataset: each commit names its parent; exactly one wins a race."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from atelier.client import DataClient
from atelier.errors import Aborted
from tests.integration.data.helpers import commit_raw


def test_racing_commits_on_one_parent_one_wins(data_client: DataClient) -> None:
    data_client.ensure_dataset("lab", "ds")
    base = commit_raw(data_client, "lab", "ds", [("a", b"base")])

    def attempt(i: int) -> str:
        try:
            return commit_raw(data_client, "lab", "ds", [("a", b"base"), (f"f{i}", b"%d" % i)], parent=base.name).name
        except Aborted:
            return "aborted"

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(attempt, range(8)))
    assert results.count("aborted") == 7
    assert len(list(data_client.list_versions("projects/lab/datasets/ds"))) == 2


def test_racing_commits_with_rebase_all_land(data_client: DataClient) -> None:
    data_client.ensure_dataset("lab", "ds")
    base = commit_raw(data_client, "lab", "ds", [("a", b"base")])

    def attempt(i: int) -> int:
        entries = [("a", b"base"), (f"f{i}", b"%d" % i)]
        return commit_raw(data_client, "lab", "ds", entries, parent=base.name, rebase=True).number

    with ThreadPoolExecutor(4) as pool:
        numbers = sorted(pool.map(attempt, range(4)))
    assert numbers == [2, 3, 4, 5]
    latest = list(data_client.list_files("projects/lab/datasets/ds/versions/latest"))
    assert sorted(f.path for f in latest) == ["a", "f0", "f1", "f2", "f3"]
