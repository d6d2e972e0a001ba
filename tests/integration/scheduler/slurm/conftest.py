"""One real Slurm for the whole test run, shared by the pytest-xdist workers, and schedulers that
hand their jobs to it.

The first worker that needs Slurm starts it (under a file lock in the run's shared temporary
directory); each worker signs in and out; the last one out stops it. Without xdist the one process
does all of that. The tests skip only when the Slurm or munge programs are not installed
(`make services` installs them).
"""

from __future__ import annotations

import fcntl
import json
import socket
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ServerThread
from tests.integration.scheduler.conftest import Cluster
from tests.integration.scheduler.slurm import slurm_cluster
from tests.integration.scheduler.slurm.slurm_cluster import GPU_TYPES, Slurm


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@pytest.fixture(scope="session")
def slurm(tmp_path_factory: pytest.TempPathFactory, worker_id: str) -> Iterator[Slurm]:
    missing = slurm_cluster.missing_programs()
    if missing:
        pytest.skip(f"Slurm is not installed here (no {', '.join(missing)}); `make services` installs slurm-wlm, munge")
    base = tmp_path_factory.getbasetemp()
    shared = base if worker_id == "master" else base.parent
    lock, record, users = shared / "slurm.lock", shared / "slurm.json", shared / "slurm-users"
    with _locked(lock):
        users.mkdir(exist_ok=True)
        if any(users.iterdir()) and record.exists():
            found = json.loads(record.read_text())
            running = Slurm(Path(found["root"]), found["node"])
        else:
            running = slurm_cluster.start(socket.gethostname().split(".")[0])
            record.write_text(json.dumps({"root": str(running.root), "node": running.node}))
        (users / worker_id).touch()
    yield running
    with _locked(lock):
        (users / worker_id).unlink()
        if not any(users.iterdir()):
            slurm_cluster.stop(running)
            record.unlink()


class SlurmScheduler:
    """Schedulers (in-process, on 127.0.0.1:0) that hand jobs to the test Slurm; started and stopped
    by the test, all stopped at its end."""

    def __init__(self, slurm: Slurm, home: Path, database_url: str) -> None:
        self.slurm = slurm
        self.home = home
        self.database_url = database_url
        self.work_dir = home / "slurm-work"
        self.running: list[tuple[Cluster, ServerThread]] = []

    def start(self, **overrides: Any) -> Cluster:
        from services.scheduler.server import build
        from services.scheduler.settings import SchedulerSettings

        fields: dict[str, Any] = {
            "home": self.home,
            "database_url": self.database_url,
            "data_address": "127.0.0.1:1",  # no data service: tests with datasets start one and pass its address
            "default_executor": "slurm",
            "slurm_conf": str(self.slurm.conf),
            "slurm_gpu_types": GPU_TYPES,
            "slurm_work_dir": str(self.work_dir),
            "slurm_python": sys.executable,
            "slurm_poll_interval_seconds": 0.3,
            **overrides,
        }
        settings = SchedulerSettings(**fields)
        thread = ServerThread(lambda: build(settings))
        cluster = Cluster("127.0.0.1:1", thread.start(), self.home)
        self.running.append((cluster, thread))
        return cluster

    def stop(self, cluster: Cluster) -> None:
        """Stops that scheduler (as SIGTERM would); its jobs stay in the database and in Slurm."""
        for entry in list(self.running):
            if entry[0] is cluster:
                self.running.remove(entry)
                cluster.client.close()
                cluster.agents.close()
                cluster.data.close()
                entry[1].stop()

    def close(self) -> None:
        for cluster, _ in list(self.running):
            self.stop(cluster)


@pytest.fixture
def schedulers(slurm: Slurm, tmp_path: Path, database_url: str) -> Iterator[SlurmScheduler]:
    made = SlurmScheduler(slurm, tmp_path / "home", database_url)
    yield made
    made.close()


@pytest.fixture
def scheduler(schedulers: SlurmScheduler) -> Cluster:
    """One scheduler with executor slurm by default."""
    return schedulers.start()
