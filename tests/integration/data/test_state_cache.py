"""The push state cache: unchanged files are not read again, changed ones are, and a store that
lacks what the cache knows still receives it."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import pytest

from atelier.chunking import ChunkedFile
from atelier.client import DataClient
from atelier.datasets import reading
from atelier.datasets.pull import pull
from atelier.datasets.push import push
from atelier.datasets.statecache import Stamp, StateCache
from atelier.names import parse_dataset_ref
from tests.integration.data.helpers import random_tree, read_tree, write_tree

REF = parse_dataset_ref("ds", "lab")
PAST = 1_700_000_000


def age(root: Path) -> None:
    """Make every file look long unchanged (the cache never trusts files modified just now)."""
    for path in root.rglob("*"):
        if path.is_file():
            os.utime(path, (PAST, PAST))


@pytest.fixture
def reads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    seen: list[str] = []
    original = reading.read_and_cut

    def counting(path: str, *rest: Any) -> Any:
        seen.append(path)
        return original(path, *rest)

    monkeypatch.setattr(reading, "read_and_cut", counting)
    return seen


def test_unchanged_files_are_not_read_again(data_client: DataClient, tmp_path: Path, reads: list[str]) -> None:
    random_tree(tmp_path / "src", count=12)
    age(tmp_path / "src")
    push(data_client, tmp_path / "src", REF)
    assert len(reads) == 12
    reads.clear()

    again = push(data_client, tmp_path / "src", REF)

    assert not again.created
    assert reads == []
    write_tree(tmp_path / "src", {"dir0/file000.bin": b"edited"})
    os.utime(tmp_path / "src" / "dir0" / "file000.bin", (PAST + 5, PAST + 5))
    edited = push(data_client, tmp_path / "src", REF)
    assert edited.created
    assert [Path(p).name for p in reads] == ["file000.bin"]


def test_a_store_that_lacks_cached_chunks_still_gets_them(
    serve: Callable[[Callable[[], Any]], str], data_client: DataClient, tmp_path: Path, reads: list[str]
) -> None:
    from services.data.server import build
    from services.data.settings import DataSettings

    files = random_tree(tmp_path / "src", count=8, size=30_000)
    age(tmp_path / "src")
    push(data_client, tmp_path / "src", REF)
    other = DataClient.at(serve(lambda: build(DataSettings(home=tmp_path / "other"))))
    reads.clear()

    result = push(other, tmp_path / "src", REF)

    assert result.created
    assert result.sent_chunks >= 8
    assert len(reads) == 8
    pull(other, REF, tmp_path / "out")
    assert read_tree(tmp_path / "out") == files


def test_the_cache_is_not_gone_through_for_a_store_that_lacks_its_chunks(
    serve: Callable[[Callable[[], Any]], str],
    data_client: DataClient,
    tmp_path: Path,
    reads: list[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from services.data.server import build
    from services.data.settings import DataSettings

    random_tree(tmp_path / "src", count=100, size=2_000)
    age(tmp_path / "src")
    lookups: list[str] = []
    original = StateCache.lookup

    def counting(self: StateCache, root: str) -> dict[str, tuple[Stamp, bytes]]:
        lookups.append(root)
        return original(self, root)

    monkeypatch.setattr(StateCache, "lookup", counting)
    remembered: list[int] = []
    remember = StateCache.remember

    def recording(self: StateCache, entries: Iterable[tuple[str, Stamp, ChunkedFile]]) -> None:
        listed = list(entries)
        remembered.append(len(listed))
        remember(self, listed)

    monkeypatch.setattr(StateCache, "remember", recording)
    push(data_client, tmp_path / "src", REF)
    assert lookups == []  # nothing remembered yet: no file is looked up
    assert remembered == [100]
    again = push(data_client, tmp_path / "src", REF)
    assert not again.created
    assert len(lookups) == 1
    other = DataClient.at(serve(lambda: build(DataSettings(home=tmp_path / "other"))))
    reads.clear()

    fresh = push(other, tmp_path / "src", REF)

    assert fresh.created
    assert len(lookups) == 1  # the sample showed the store lacks what the cache knows
    assert len(reads) == 100
    assert fresh.version.digest == again.version.digest
    assert remembered[-1] == 0  # the sample showed the tree as remembered: its rows are not written again
