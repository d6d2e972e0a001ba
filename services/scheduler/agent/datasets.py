"""Dataset versions on a node: fetched once through the data service into a cache jobs share."""

from __future__ import annotations

import shutil
import threading
from pathlib import Path

from atelier.client import DataClient
from atelier.datasets.pull import pull
from atelier.names import parse_dataset_ref


class DatasetCache:
    """`fetch(version, root)` returns `root/<project>/<dataset>/<version>`, pulling it first when
    missing. A version is pulled into a temporary directory and renamed into place, so a crash
    never leaves a half version where a job would read it."""

    def __init__(self, client: DataClient) -> None:
        self.client = client
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    def fetch(self, version: str, root: Path) -> Path:
        _, project, _, dataset, _, number = version.split("/")
        target = root / project / dataset / number
        with self._guard:
            lock = self._locks.setdefault(version, threading.Lock())
        with lock:
            if target.is_dir():
                return target
            partial = target.with_name(f".{number}.partial")
            partial.mkdir(parents=True, exist_ok=True)  # pull resumes what a crash left here
            pull(self.client, parse_dataset_ref(version, project), partial)
            partial.rename(target)
            shutil.rmtree(partial, ignore_errors=True)
            return target
