"""Finding a push's files: sorted relative paths, symbolic links kept inside the tree, clear errors."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from atelier.datasets.scan import scan
from atelier.errors import FailedPrecondition, InvalidArgument


def test_files_come_sorted_by_relative_path(tmp_path: Path) -> None:
    for name in ("b/z", "a/c/y", "a.txt", "a/x", "a-b/w"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"1")

    found = scan(tmp_path)

    assert [f.path for f in found] == sorted(["b/z", "a/c/y", "a.txt", "a/x", "a-b/w"])
    assert all(f.absolute == str(tmp_path / f.path) for f in found)


def test_links_are_followed_only_to_files_inside_the_tree(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "real").write_bytes(b"1")
    (tmp_path / "outside").write_bytes(b"2")
    os.symlink(tree / "real", tree / "inside-link")
    os.symlink(tmp_path / "outside", tree / "outside-link")
    os.symlink(tree / "missing", tree / "dangling")

    assert [f.path for f in scan(tree)] == ["inside-link", "real"]


def test_a_directory_that_cannot_be_listed_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "locked").mkdir()
    real = os.scandir

    def refusing(path: str) -> object:
        if path.endswith("locked"):
            raise PermissionError(13, "Permission denied", path)
        return real(path)

    monkeypatch.setattr(os, "scandir", refusing)

    with pytest.raises(FailedPrecondition, match=r"cannot list .*locked: Permission denied"):
        scan(tmp_path)


def test_the_root_must_be_a_directory(tmp_path: Path) -> None:
    (tmp_path / "file").write_bytes(b"1")

    with pytest.raises(InvalidArgument, match="is not a directory"):
        scan(tmp_path / "file")
