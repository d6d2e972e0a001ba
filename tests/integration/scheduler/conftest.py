"""A data service and a scheduler in-process (fast cycles), and node agents as real processes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from atelier.client import DataClient
from atelier.client.scheduler import AgentClient, SchedulerClient
from atelier.scheduler.v1 import resources_pb2 as pb

ROOT = Path(__file__).resolve().parents[3]


class Cluster:
    def __init__(self, data: str, scheduler: str, home: Path) -> None:
        self.data_address = data
        self.address = scheduler
        self.home = home
        self.client = SchedulerClient.at(scheduler)
        self.agents = AgentClient.at(scheduler)
        self.data = DataClient.at(data)

    @property
    def metrics_address(self) -> str:
        """host:port of the scheduler's Prometheus endpoint."""
        return str(json.loads((self.home / "run" / "scheduler.json").read_text())["metrics"])

    def wait_for(self, name: str, states: tuple[int, ...], timeout: float = 60.0) -> pb.Job:
        deadline = time.monotonic() + timeout
        while True:
            job = self.client.get_job(name)
            if job.state in states:
                return job
            if time.monotonic() > deadline:
                raise AssertionError(f"{name} still {pb.JobState.Name(job.state)} ({job.reason})")
            time.sleep(0.1)


@pytest.fixture
def cluster(serve: Callable[[Callable[[], Any]], str], tmp_path: Path, database_url: str) -> Iterator[Cluster]:
    from services.data.server import build as build_data
    from services.data.settings import DataSettings
    from services.scheduler.server import build as build_scheduler
    from services.scheduler.settings import SchedulerSettings

    home = tmp_path / "home"
    data = serve(lambda: build_data(DataSettings(home=home)))
    settings = SchedulerSettings(
        home=home,
        database_url=database_url,
        data_address=data,
        cycle_interval_seconds=0.1,
        heartbeat_interval_seconds=0.2,
        node_timeout_seconds=3.0,
        grace_period_seconds=3.0,
        rendezvous_port_base=30000 + os.getpid() % 5000 * 5,
        address_file=home / "run" / "scheduler.json",
    )
    address = serve(lambda: build_scheduler(settings))
    made = Cluster(data, address, home)
    yield made
    made.client.close()
    made.agents.close()
    made.data.close()


def inventory(*models: str, nvlink: list[list[int]] | None = None) -> str:
    return json.dumps({"cards": [{"model": m} for m in models], "nvlink": nvlink or []})


@pytest.fixture
def start_agent(cluster: Cluster, tmp_path: Path) -> Iterator[Callable[..., subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []

    def start(node_id: str, *models: str, **settings: str) -> subprocess.Popen[bytes]:
        env = dict(os.environ)
        env.update(
            {
                "ATELIER_AGENT_SCHEDULER_ADDRESS": cluster.address,
                "ATELIER_AGENT_DATA_ADDRESS": cluster.data_address,
                "ATELIER_AGENT_NODE_ID": node_id,
                "ATELIER_AGENT_ADDRESS": "127.0.0.1",
                "ATELIER_AGENT_DISCOVERY": "declared",
                "ATELIER_AGENT_INVENTORY_JSON": inventory(*models),
                "ATELIER_AGENT_WORK_DIR": str(tmp_path / "agents" / node_id),
                "ATELIER_AGENT_HOME": str(cluster.home),
                "ATELIER_AGENT_METRICS_HOST": "127.0.0.1",
                "PYTHONPATH": str(ROOT),
            }
        )
        env.update(
            {
                key.upper() if key.startswith("otel_") else f"ATELIER_AGENT_{key.upper()}": v
                for key, v in settings.items()
            }
        )
        log = (tmp_path / f"agent-{node_id}.log").open("wb")
        process = subprocess.Popen(
            [sys.executable, "-m", "services.scheduler.agent"], env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT
        )
        started.append(process)
        deadline = time.monotonic() + 60
        while not any(n.name == f"nodes/{node_id}" for n in cluster.client.list_nodes()):
            if process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError((tmp_path / f"agent-{node_id}.log").read_text())
            time.sleep(0.1)
        return process

    yield start
    for process in started:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    for process in started:
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
