"""Reading a push's files: each one's chunking, bytes and stamp, in order, without touching access times."""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest

from atelier.datasets.reading import read_and_cut, read_files
from atelier.errors import FailedPrecondition


def _tree(root: Path, sizes: list[int]) -> list[str]:
    paths = []
    for index, size in enumerate(sizes):
        path = root / f"f{index:05d}"
        path.write_bytes(os.urandom(size))
        paths.append(str(path))
    return paths


def test_files_are_read_in_order(tmp_path: Path) -> None:
    rng = random.Random(7)
    sizes = [rng.choice([0, 1, 4096, 16 * 1024, 16 * 1024 + 1, 300_000]) for _ in range(40)]
    paths = _tree(tmp_path, sizes)

    got = list(read_files(paths, stamped=True))

    assert [cut.size for cut, _, _ in got] == sizes
    assert [bytes(data) for _, data, _ in got] == [Path(p).read_bytes() for p in paths]
    assert [stamp for _, _, stamp in got] == [
        (s.st_size, s.st_mtime_ns, s.st_ctime_ns, s.st_ino) for s in map(os.stat, paths)
    ]


def test_reading_leaves_the_access_time_alone(tmp_path: Path) -> None:
    (path,) = _tree(tmp_path, [100])
    before = os.stat(path)
    # An access time older than the modification time: a plain read would update it (relatime).
    os.utime(path, ns=(before.st_mtime_ns - 10**12, before.st_mtime_ns))

    read_and_cut(path)

    assert os.stat(path).st_atime_ns == before.st_mtime_ns - 10**12


def _open_descriptors() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_files_of_several_directories_in_any_order(tmp_path: Path) -> None:
    for folder in ("a", "b", "a/c"):
        (tmp_path / folder).mkdir(exist_ok=True)
    names = ["a/x", "b/y", "a/z", "a/c/w", "a/v", "top"]
    paths = []
    for index, name in enumerate(names):
        (tmp_path / name).write_bytes(bytes([index]) * (index + 1))
        paths.append(str(tmp_path / name))
    before = _open_descriptors()

    got = [bytes(data) for _, data, _ in read_files(paths, stamped=False)]

    assert got == [Path(p).read_bytes() for p in paths]
    assert _open_descriptors() == before


def test_a_read_stopped_early_closes_what_it_opened(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    paths = _tree(tmp_path / "d", [10, 10, 10])
    before = _open_descriptors()
    reads = read_files(paths, stamped=False)

    next(reads)
    reads.close()

    assert _open_descriptors() == before


def test_a_file_gone_since_the_scan_is_named_in_one_line(tmp_path: Path) -> None:
    paths = _tree(tmp_path, [10, 10])
    os.unlink(paths[1])

    with pytest.raises(FailedPrecondition, match=f"^{paths[1]} disappeared during the push; push again$"):
        list(read_files(paths, stamped=False))
