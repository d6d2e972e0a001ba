"""The state cache stores a file's chunking as a blob and reads it back unchanged."""

from __future__ import annotations

import os

import pytest

from atelier.chunking import chunk_bytes
from atelier.datasets.statecache import decode, encode


@pytest.mark.parametrize("size", [0, 1, 4096, 16 * 1024, 600_000], ids=["empty", "byte", "small", "min", "many"])
def test_round_trip(size: int) -> None:
    cut = chunk_bytes(os.urandom(size))

    assert decode(encode(cut), size) == cut


def test_the_many_chunk_case_has_several_chunks() -> None:
    assert len(chunk_bytes(os.urandom(600_000)).chunks) > 1
