"""A real agent process publishes its cards with dcgm-exporter's names, who holds them, and a
Prometheus target file in the stack's home."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from atelier.client.monitor import MonitorClient
from atelier.scheduler.v1 import resources_pb2 as pb
from tests.integration.scheduler.conftest import Cluster
from tests.prometheus import Samples, scrape, value

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


def agent_samples(cluster: Cluster, node: str, until: Callable[[Samples], bool]) -> Samples:
    target = cluster.home / "prometheus" / "targets" / f"agent-{node}.json"
    deadline = time.monotonic() + 30
    while not target.exists():
        assert time.monotonic() < deadline, "the agent wrote no Prometheus target file"
        time.sleep(0.1)
    group = json.loads(target.read_text())[0]
    assert group["labels"] == {"job": "agent", "service": "agent", "node": node}
    while True:
        samples = scrape(group["targets"][0])
        if until(samples) or time.monotonic() > deadline:
            return samples
        time.sleep(0.2)


def test_a_running_job_shows_on_its_card(cluster: Cluster, start_agent: Callable[..., object]) -> None:
    start_agent("gpu-a", "A100-80", "T4", idle_after_seconds="0.5", simulated_busy_utilization="3")
    job = cluster.client.submit(
        "vision",
        pb.Job(
            command=[sys.executable, "-c", "import time; time.sleep(60)"],
            launcher=pb.LAUNCHER_COMMAND,
            resources=pb.Resources(gpus_per_node=1, min_gpu_memory_bytes=40 * 1024**3),
            user="ana",
        ),
        "sleeper",
    )
    cluster.wait_for(job.name, (pb.JOB_STATE_RUNNING,))

    samples = agent_samples(cluster, "gpu-a", lambda s: value(s, "atelier_gpu_allocated_idle") == 1)
    temperatures = {labels["gpu"]: labels for labels, _ in samples["DCGM_FI_DEV_GPU_TEMP"]}
    assert set(temperatures) == {"0", "1"}
    assert temperatures["0"]["modelName"] == "A100-80"
    assert temperatures["0"]["simulated"] == "true"
    assert value(samples, "DCGM_FI_DEV_GPU_UTIL", gpu="0") == 3.0  # the job's card, barely used
    assert value(samples, "DCGM_FI_DEV_GPU_UTIL", gpu="1") == 0.0
    assert value(samples, "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION", gpu="0") > 0
    held = {"gpu": "0", "atelier_job": job.name, "project": "vision", "user": "ana"}
    assert value(samples, "atelier_gpu_job_info", **held) == 1
    assert value(samples, "atelier_gpu_allocated_idle", **held) == 1  # 3% < 5% for over 0.5 s
    assert value(samples, "process_cpu_seconds_total") > 0

    cluster.client.cancel(job.name)
    cluster.wait_for(job.name, (pb.JOB_STATE_CANCELLED,))
    samples = agent_samples(cluster, "gpu-a", lambda s: "atelier_gpu_job_info" not in s)
    assert "atelier_gpu_job_info" not in samples


def test_the_agent_reports_usage_to_the_monitor(
    cluster: Cluster, start_agent: Callable[..., object], serve: Callable[[Callable[[], Any]], str], tmp_path: Path
) -> None:
    from services.monitor.server import build
    from services.monitor.settings import MonitorSettings

    monitor_address = serve(lambda: build(MonitorSettings(home=tmp_path / "monitor")))
    start_agent("gpu-b", "H100", monitor_address=monitor_address, usage_report_interval_seconds="0.5")
    job = cluster.client.submit(
        "vision",
        pb.Job(
            command=[sys.executable, "-c", "import time; time.sleep(60)"],
            launcher=pb.LAUNCHER_COMMAND,
            resources=pb.Resources(gpus_per_node=1),
            user="ana",
        ),
        "measured",
    )
    cluster.wait_for(job.name, (pb.JOB_STATE_RUNNING,))
    monitor = MonitorClient.at(monitor_address)
    deadline = time.monotonic() + 30
    while (usage := monitor.query_usage("vision")).total.gpu_hours * 3600 < 2 and time.monotonic() < deadline:
        time.sleep(0.5)
    [row] = usage.rows
    assert (row.job, row.user, row.cards, row.simulated) == (job.name, "ana", 1, True)
    assert row.gpu_hours * 3600 >= 2
    # Simulated power while busy is 40 W + 2.5 W per percent at 90%: 265 W for every second held.
    assert row.energy_kwh * 3.6e6 == pytest.approx(265 * row.gpu_hours * 3600, rel=0.2)
    cluster.client.cancel(job.name)
    monitor.close()
