"""The local object store: how it lays files out on disk, atomicity and durability, and opening one
from a path or a `file://` URL.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from atelier.errors import FailedPrecondition, Internal, InvalidArgument
from atelier.runtime.objectstore import LocalObjectStore, open_object_store
from tests.integration.objectstore.helpers import DATA

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def local_store(tmp_path: Path) -> LocalObjectStore:
    """A fresh local store, for tests of how it lays files out on disk."""
    return LocalObjectStore(tmp_path / "objects")


# --- local store: layout, atomicity and durability ------------------------------------------


def test_local_layout(local_store: LocalObjectStore) -> None:
    local_store.put("packs/ab/abcd", DATA)

    assert (local_store.root / "packs" / "ab" / "abcd").read_bytes() == DATA


def test_local_leftover_temp_files_are_invisible(local_store: LocalObjectStore) -> None:
    # What a crash between creating the temp file and renaming it leaves behind.
    local_store.put("packs/ab/abcd", b"committed")
    (local_store.root / "packs" / "ab" / ".tmp-0123abcd").write_bytes(b"half-written")
    (local_store.root / ".tmp-deadbeef").write_bytes(b"half-written")

    assert list(local_store.list()) == [("packs/ab/abcd", 9)]
    assert list(local_store.list("packs/ab/.tmp")) == []
    assert local_store.get("packs/ab/abcd") == b"committed"
    with pytest.raises(InvalidArgument):
        local_store.exists("packs/ab/.tmp-0123abcd")
    with pytest.raises(InvalidArgument):
        local_store.get("packs/ab/.tmp-0123abcd")


def test_local_failed_put_keeps_old_object_and_cleans_up(
    local_store: LocalObjectStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    local_store.put("packs/ab/abcd", b"old")

    def crash(src: Any, dst: Any) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(Internal, match="Input/output error"):
        local_store.put("packs/ab/abcd", b"new")
    monkeypatch.undo()

    assert local_store.get("packs/ab/abcd") == b"old"
    assert sorted(p.name for p in (local_store.root / "packs" / "ab").iterdir()) == ["abcd"]


def test_local_put_syncs_file_and_directory(local_store: LocalObjectStore, monkeypatch: pytest.MonkeyPatch) -> None:
    synced: list[str] = []
    real_fsync = os.fsync

    def spy(fd: int) -> None:
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", spy)
    local_store.put("packs/ab/abcd", b"x")

    directory = str(local_store.root / "packs" / "ab")
    assert any(Path(path).name.startswith(".tmp-") for path in synced), synced
    assert directory in synced
    # The new directories' own entries are synced in their parents, too.
    assert str(local_store.root) in synced


def test_local_key_clashing_with_prefix_is_rejected(local_store: LocalObjectStore) -> None:
    local_store.put("packs/ab", b"x")

    with pytest.raises(FailedPrecondition, match="packs/ab/cd"):
        local_store.put("packs/ab/cd", b"y")
    local_store.put("packs/xy/cd", b"z")
    with pytest.raises(FailedPrecondition, match="'packs/xy'"):
        local_store.put("packs/xy", b"y")

    assert local_store.get("packs/ab") == b"x"


# --- open_object_store: local paths and file:// URLs ----------------------------------------


def test_open_local_path(tmp_path: Path) -> None:
    store = open_object_store(str(tmp_path / "plain"))

    assert isinstance(store, LocalObjectStore)
    assert store.root == tmp_path / "plain"
    store.put("k", b"v")
    assert (tmp_path / "plain" / "k").read_bytes() == b"v"


@pytest.mark.parametrize("form", ["file://{path}", "file://localhost{path}"])
def test_open_file_url(tmp_path: Path, form: str) -> None:
    target = tmp_path / "with space"
    store = open_object_store(form.format(path=str(target).replace(" ", "%20")))

    assert isinstance(store, LocalObjectStore)
    assert store.root == target
