"""The scheduler's Prometheus series: jobs, queue, GPUs by model, nodes, fair share, cycle time."""

from __future__ import annotations

import time

from atelier.scheduler.v1 import agent_service_pb2 as agent
from atelier.scheduler.v1 import resources_pb2 as pb
from tests.integration.scheduler.conftest import Cluster
from tests.integration.scheduler.test_jobs import job, register, status, wait_tasks
from tests.prometheus import Samples, scrape, value


def scraped_when(cluster: Cluster, ready: str, **labels: str) -> Samples:
    """Scrape until series `ready` with `labels` is positive (the cycle runs every 0.1 s)."""
    deadline = time.monotonic() + 30
    while True:
        samples = scrape(cluster.metrics_address)
        if value(samples, ready, **labels) > 0 or time.monotonic() > deadline:
            return samples
        time.sleep(0.1)


def test_queue_gpus_and_fair_share_are_exported(cluster: Cluster) -> None:
    register(cluster, "n1", "A100-80", "A100-80", "T4")
    running = cluster.client.submit("vision", job(2, 40), "big")
    cluster.client.submit("vision", job(2, 40), "waits")
    cluster.client.submit("speech", job(1, 0, priority_class="high"), "small")
    tasks = wait_tasks(cluster, "n1", 2)
    cluster.agents.heartbeat("nodes/n1", [], [status(t, agent.TASK_STATE_RUNNING) for t in tasks])

    # speech's job may start a cycle after vision's, and usage accrues from the cycle after a start: wait for it.
    samples = scraped_when(cluster, "atelier_scheduler_fair_share_usage_gpu_seconds", project="speech")
    assert value(samples, "atelier_scheduler_jobs", state="running") == 2
    assert value(samples, "atelier_scheduler_jobs", state="pending") == 1
    assert value(samples, "atelier_scheduler_queue_length", project="vision", priority_class="normal") == 1
    assert value(samples, "atelier_scheduler_queue_gpus", project="vision") == 2
    assert value(samples, "atelier_scheduler_queue_oldest_wait_seconds", project="vision") > 0
    assert value(samples, "atelier_scheduler_queue_length", project="speech") == 0
    assert value(samples, "atelier_scheduler_gpus", model="A100-80", use="used") == 2
    assert value(samples, "atelier_scheduler_gpus", model="T4", use="used") == 1
    assert value(samples, "atelier_scheduler_gpus", use="free") == 0
    assert value(samples, "atelier_scheduler_nodes", state="ready") == 1
    assert value(samples, "atelier_scheduler_fair_share_entitled_ratio", project="vision") == 0.5
    received = value(samples, "atelier_scheduler_fair_share_received_ratio", project="vision")
    assert 0.5 < received < 1  # 2 of the 3 GPUs in use are vision's
    assert value(samples, "atelier_scheduler_fair_share_factor", project="vision") < value(
        samples, "atelier_scheduler_fair_share_factor", project="speech"
    )
    assert value(samples, "atelier_scheduler_job_wait_seconds_count", priority_class="high", project="speech") == 1
    assert value(samples, "atelier_scheduler_job_wait_seconds_count", project="vision") == 1
    assert value(samples, "atelier_scheduler_cycle_seconds_count") > 0
    handled = value(samples, "grpc_server_handled_total", grpc_method="CreateJob", grpc_code="OK")
    assert handled == 3
    assert cluster.client.get_job(running.name).state == pb.JOB_STATE_RUNNING
