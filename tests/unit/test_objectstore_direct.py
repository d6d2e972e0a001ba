"""Object files written past the page cache hold exactly their bytes, whatever the sizes."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from atelier.runtime.objectstore import direct
from atelier.runtime.objectstore.direct import DIRECT_MIN, write_new_file

MIB = 1024 * 1024
SIZES = {
    "empty": [],
    "small": [100, 0, 7],
    "just-under": [DIRECT_MIN - 1],
    "at-threshold": [DIRECT_MIN],
    "one-buffer": [4 * MIB],
    "buffer-and-a-byte": [4 * MIB, 1],
    "many-parts": [4096] * 700 + [3 * MIB + 5, 1, 0, 12345],
}


@pytest.mark.parametrize("sizes", SIZES.values(), ids=SIZES.keys())
def test_the_file_holds_the_parts(tmp_path: Path, sizes: list[int]) -> None:
    parts = [os.urandom(n) for n in sizes]
    path = tmp_path / "object"

    write_new_file(path, [memoryview(p) if i % 2 else p for i, p in enumerate(parts)])

    assert path.read_bytes() == b"".join(parts)


def test_an_existing_file_is_never_overwritten(tmp_path: Path) -> None:
    path = tmp_path / "object"
    path.write_bytes(b"first")

    with pytest.raises(FileExistsError):
        write_new_file(path, [os.urandom(2 * MIB)])

    assert path.read_bytes() == b"first"


def test_a_direct_write_the_kernel_refuses_is_done_through_the_page_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Blocks of 100 bytes: the last, padded write is no multiple of the disk's block, which the
    # kernel refuses (EINVAL) for O_DIRECT; the file is then written again, buffered.
    monkeypatch.setattr(direct, "_BLOCK", 100)
    refused: list[Path] = []
    original = direct._write_direct

    def watched(path: Path, parts: list[bytes], total: int) -> None:
        try:
            original(path, parts, total)
        except direct._Refused:
            refused.append(path)
            raise

    monkeypatch.setattr(direct, "_write_direct", watched)
    data = os.urandom(2 * MIB + 3)
    path = tmp_path / "object"

    write_new_file(path, [data])

    assert path.read_bytes() == data
    assert refused == [path]
