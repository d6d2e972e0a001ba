"""Dataset versions on a node: fetched once through the data service into a cache jobs share."""

from __future__ import annotations

import shutil
import threading
from collections.abc import Callable
from pathlib import Path

from atelier.client import DataClient
from atelier.datasets.pull import pull
from atelier.names import parse_dataset_ref


class DatasetCache:
    """`fetch(version, root)` returns `root/<project>/<dataset>/<version>`, pulling it first when
    missing. A version is pulled into a temporary directory and renamed into place, so a crash
    never leaves a half version where a job would read it."""

    def __init__(self, client: DataClient, client_as: Callable[[str], DataClient] | None = None) -> None:
        self.client = client
        self._client_as = client_as
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    def fetch(self, version: str, root: Path, token: str = "") -> Path:
        """The version's directory, pulled first (with `token`, the job's, when given) when missing."""
        _, project, _, dataset, _, number = version.split("/")
        target = root / project / dataset / number
        with self._guard:
            lock = self._locks.setdefault(version, threading.Lock())
        with lock:
            if target.is_dir():
                return target
            partial = target.with_name(f".{number}.partial")
            partial.mkdir(parents=True, exist_ok=True)  # pull resumes what a crash left here
            client = self._client_as(token) if token and self._client_as is not None else self.client
            try:
                pull(client, parse_dataset_ref(version, project), partial)
            finally:
                if client is not self.client:
                    client.close()
            partial.rename(target)
            shutil.rmtree(partial, ignore_errors=True)
            return target
