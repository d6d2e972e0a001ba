from __future__ import annotations

import os

from blake3 import blake3

from atelier.chunking import MAX_CHUNK, MIN_CHUNK, chunk_bytes, cut_points


def test_small_data_is_one_chunk_equal_to_file_digest() -> None:
    data = b"hello"
    cut = chunk_bytes(data)
    assert len(cut.chunks) == 1
    assert cut.chunks[0].digest.hex() == cut.digest == blake3(data).hexdigest()


def test_empty_data_has_no_chunks() -> None:
    assert chunk_bytes(b"").chunks == ()
    assert chunk_bytes(b"").digest == blake3(b"").hexdigest()


def test_chunks_cover_data_within_bounds() -> None:
    data = os.urandom(5 * 1024 * 1024)
    points = cut_points(data)
    assert points[0][0] == 0
    assert sum(n for _, n in points) == len(data)
    assert all(a + n == b for (a, n), (b, _) in zip(points, points[1:], strict=False))
    assert all(MIN_CHUNK <= n <= MAX_CHUNK for _, n in points[:-1])
    assert chunk_bytes(data).digest == blake3(data).hexdigest()


def test_edit_in_middle_changes_few_chunks() -> None:
    data = bytearray(os.urandom(16 * 1024 * 1024))
    before = {c.digest for c in chunk_bytes(bytes(data)).chunks}
    data[8_000_000:8_001_000] = os.urandom(1000)
    after = chunk_bytes(bytes(data)).chunks
    changed = [c for c in after if c.digest not in before]
    assert 1 <= len(changed) <= 3
    assert sum(c.length for c in changed) <= 3 * MAX_CHUNK
