"""Reading a push's files on reader threads gives what reading them one by one gives, in order."""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest

from atelier.datasets import reading
from atelier.datasets.reading import read_and_cut, read_files


def _tree(root: Path, sizes: list[int]) -> list[str]:
    paths = []
    for index, size in enumerate(sizes):
        path = root / f"f{index:05d}"
        path.write_bytes(os.urandom(size))
        paths.append(str(path))
    return paths


@pytest.mark.parametrize("read_bytes", [8 * 1024 * 1024, 50_000], ids=["default", "tasks-stop-early"])
def test_threads_read_what_one_thread_reads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, read_bytes: int) -> None:
    monkeypatch.setattr(reading, "READ_BYTES", read_bytes)
    rng = random.Random(7)
    sizes = [rng.choice([0, 1, 4096, 16 * 1024, 16 * 1024 + 1, 300_000]) for _ in range(3 * reading.READ_FILES + 5)]
    paths = _tree(tmp_path, sizes)

    got = list(read_files(paths, stamped=True))

    assert [(cut, bytes(data), stamp) for cut, data, stamp in got] == [
        (cut, bytes(data), stamp) for cut, data, stamp in (read_and_cut(p, stamped=True) for p in paths)
    ]
    assert [cut.size for cut, _, _ in got] == sizes


def test_a_failed_read_is_raised_after_the_files_before_its_task(tmp_path: Path) -> None:
    paths = _tree(tmp_path, [10] * (3 * reading.READ_FILES))
    os.unlink(paths[reading.READ_FILES + 3])
    reads = read_files(paths, stamped=False)
    before = [next(reads) for _ in range(reading.READ_FILES)]

    with pytest.raises(FileNotFoundError):
        next(reads)

    assert [cut.size for cut, _, _ in before] == [10] * reading.READ_FILES


def test_reading_leaves_the_access_time_alone(tmp_path: Path) -> None:
    (path,) = _tree(tmp_path, [100])
    before = os.stat(path)
    # An access time older than the modification time: a plain read would update it (relatime).
    os.utime(path, ns=(before.st_mtime_ns - 10**12, before.st_mtime_ns))

    read_and_cut(path)

    assert os.stat(path).st_atime_ns == before.st_mtime_ns - 10**12
