"""Reading a push's files: each one's chunking, bytes and stamp, in order, without touching access times."""

from __future__ import annotations

import os
import random
from pathlib import Path

from atelier.datasets.reading import read_and_cut, read_files


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
