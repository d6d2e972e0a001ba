"""A real two-node, two-process-per-node DDP job through two agents on this machine."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from atelier.scheduler.v1 import resources_pb2 as pb
from tests.integration.scheduler.conftest import Cluster

SCRIPT = Path(__file__).with_name("ddp_train.py")
pytestmark = pytest.mark.timeout(300)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_two_node_ddp_job_trains(cluster: Cluster, start_agent: Callable[..., object]) -> None:
    start_agent("node-a", "T4", "T4")
    start_agent("node-b", "A10", "A10")
    job = cluster.client.submit(
        "lab",
        pb.Job(
            command=["python", str(SCRIPT)],
            resources=pb.Resources(nodes=2, gpus_per_node=2, precision=pb.PRECISION_FP16),
        ),
        "ddp",
    )
    assert job.state == pb.JOB_STATE_PENDING
    done = cluster.wait_for(job.name, (pb.JOB_STATE_SUCCEEDED, pb.JOB_STATE_FAILED), timeout=180)
    lines = [line for page in cluster.client.logs(job.name, follow=True) for line in page.lines]
    text = [line.text for line in lines]
    assert done.state == pb.JOB_STATE_SUCCEEDED, "\n".join(text)

    result = json.loads(next(t for t in text if t.startswith("RESULT ")).removeprefix("RESULT "))
    assert result["world"] == 4
    assert result["allreduce"] == 1 + 2 + 3 + 4  # every rank took part
    assert result["same"] is True  # DDP kept the replicas in step
    assert result["last"] < result["first"] / 10  # and the model trained

    ranks = sorted(t.split()[0] for t in text if t.startswith("rank="))
    assert ranks == ["rank=0", "rank=1", "rank=2", "rank=3"], "\n".join(text)
    assert {line.rank for line in lines} == {0, 1}  # both nodes' output reached the log
    assert any("cuda_visible=0,1" in t for t in text)
    placement = done.placement
    assert [n.node for n in placement.nodes] == ["nodes/node-a", "nodes/node-b"] or [
        n.node for n in placement.nodes
    ] == ["nodes/node-b", "nodes/node-a"]
    assert placement.rendezvous_endpoint.startswith("127.0.0.1:")
    # The cards are free again once the job ended.
    assert all(not card.job for node in cluster.client.list_nodes() for card in node.cards)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_relative_working_directory_is_inside_the_jobs_own(
    cluster: Cluster, start_agent: Callable[..., object], tmp_path: Path
) -> None:
    start_agent("node-a", "T4")
    job = cluster.client.submit(
        "lab",
        pb.Job(
            command=["sh", "-c", "pwd"],
            launcher=pb.LAUNCHER_COMMAND,
            resources=pb.Resources(gpus=1),
            working_directory="data",
        ),
        "here",
    )
    done = cluster.wait_for(job.name, (pb.JOB_STATE_SUCCEEDED, pb.JOB_STATE_FAILED), timeout=60)
    text = [line.text for page in cluster.client.logs(job.name, follow=True) for line in page.lines]
    assert done.state == pb.JOB_STATE_SUCCEEDED, "\n".join(text)
    task_dir = tmp_path / "agents" / "node-a" / "jobs" / "lab" / "here" / "attempt-0" / "rank-0"
    assert str(task_dir / "data") in text
