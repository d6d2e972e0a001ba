"""Where a pulled file goes: under the directory asked for (the file system's root included), never outside."""

from __future__ import annotations

import pytest

from atelier.datasets.pull import _target
from atelier.errors import InvalidArgument


def test_files_go_under_the_root() -> None:
    assert _target("/data/out", "a/b.txt") == "/data/out/a/b.txt"
    assert _target("/", "a.txt") == "/a.txt"


@pytest.mark.parametrize("path", ["../x", "a/../../x", ".", "a/.."])
def test_paths_leaving_the_root_are_refused(path: str) -> None:
    with pytest.raises(InvalidArgument, match="outside /data/out"):
        _target("/data/out", path)
