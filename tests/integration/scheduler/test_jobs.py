"""Jobs through the scheduler's API, with nodes driven by a scripted agent (AgentClient)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from google.protobuf import timestamp_pb2

from atelier.client.data import DataClient
from atelier.datasets.push import push
from atelier.errors import FailedPrecondition, InvalidArgument, NotFound
from atelier.names import parse_dataset_ref
from atelier.scheduler.v1 import agent_service_pb2 as agent
from atelier.scheduler.v1 import resources_pb2 as pb
from services.scheduler.agent.discovery import DeclaredInventory
from services.scheduler.catalogue import card_spec
from tests.integration.scheduler.conftest import Cluster, inventory

GIB = 1024**3


def register(cluster: Cluster, node_id: str, *models: str, cpus: int = 0, memory_gib: int = 0) -> pb.Node:
    found = DeclaredInventory(inventory(*models), card_spec).inventory()
    node = pb.Node(address=f"{node_id}.lab", cards=found.cards, links=found.links, discovery="declared")
    node.cpus, node.memory_bytes = cpus, memory_gib * GIB
    return cluster.agents.register(node, node_id)


def tasks_of(cluster: Cluster, node_id: str, statuses: list[agent.TaskStatus] | None = None) -> list[agent.Task]:
    return list(cluster.agents.heartbeat(f"nodes/{node_id}", [], statuses or []).tasks)


def wait_tasks(cluster: Cluster, node_id: str, count: int = 1) -> list[agent.Task]:
    deadline = time.monotonic() + 30
    while len(tasks := tasks_of(cluster, node_id)) < count:
        assert time.monotonic() < deadline, f"no task reached {node_id}"
        time.sleep(0.1)
    return tasks


def status(task: agent.Task, state: int, exit_code: int = 0) -> agent.TaskStatus:
    return agent.TaskStatus(job=task.job, attempt=task.attempt, rank=task.rank, state=state, exit_code=exit_code)  # type: ignore[arg-type]


def job(gpus: int = 1, memory_gib: int = 0, precision: int = 0, **fields: object) -> pb.Job:
    resources = pb.Resources(gpus_per_node=gpus, min_gpu_memory_bytes=memory_gib * GIB, precision=precision)  # type: ignore[arg-type]
    return pb.Job(command=["python", "train.py"], resources=resources, **fields)  # type: ignore[arg-type]


def test_a_request_no_node_could_ever_run_is_refused_with_the_reason(cluster: Cluster) -> None:
    register(cluster, "old", *["V100M32"] * 8)
    with pytest.raises(FailedPrecondition) as refused:
        cluster.client.submit("lab", job(4, 80, pb.PRECISION_BF16))
    message = refused.value.message
    assert "no node has 4 GPUs with >= 80 GiB and bf16" in message
    assert "8 x V100M32" in message
    assert "without bf16" in message
    assert list(cluster.client.list_jobs("lab")) == []


def test_cpus_and_host_memory_decide_where_a_job_fits(cluster: Cluster) -> None:
    register(cluster, "a", "A10", "A10", cpus=16, memory_gib=64)
    register(cluster, "b", "A10", "A10", cpus=16, memory_gib=64)
    greedy = job(1)
    greedy.resources.cpus_per_node = 32
    with pytest.raises(FailedPrecondition) as refused:
        cluster.client.submit("lab", greedy)
    assert "no node has 1 GPU and 32 CPUs; largest: 2 x A10 (only 16 CPUs) on nodes/" in refused.value.message
    first, second = job(1), job(1)
    first.resources.cpus_per_node, second.resources.cpus_per_node = 12, 8
    first.resources.memory_bytes_per_node = second.resources.memory_bytes_per_node = 16 * GIB
    held = cluster.wait_for(cluster.client.submit("lab", first, "first").name, (pb.JOB_STATE_RUNNING,))
    # The node "first" runs on is the tighter fit by cards, but has only 4 of its CPUs left.
    placed = cluster.wait_for(cluster.client.submit("lab", second, "second").name, (pb.JOB_STATE_RUNNING,))
    assert placed.placement.nodes[0].node != held.placement.nodes[0].node
    why = placed.placement.explanation
    assert why.startswith("1 GPU and 8 CPUs and 16 GiB host memory: A10 on ")
    assert why.endswith("; only A10 fits; backfilled: no")
    free = {n.name: (n.free_cpus, n.free_memory_bytes // GIB, n.cpus) for n in cluster.client.list_nodes()}
    assert free == {held.placement.nodes[0].node: (4, 48, 16), placed.placement.nodes[0].node: (8, 48, 16)}


def test_a_cluster_without_nodes_says_how_to_add_one(cluster: Cluster) -> None:
    with pytest.raises(FailedPrecondition, match=r"the cluster has no nodes to hold 1 GPU \(start an agent: atelier"):
        cluster.client.submit("lab", job(1))


@pytest.mark.parametrize(
    ("submitted", "expected"),
    [
        (pb.Job(command=[]), "job.command is empty"),
        (pb.Job(command=["torchrun", "train.py"]), "without torchrun"),
        (pb.Job(command=["bash", "run.sh"]), "COMMAND launcher"),
        (job(priority_class="urgent"), "allowed: high, low, normal"),
        (pb.Job(command=["python", "t.py"], resources=pb.Resources(nodes=2, gpus=3)), "does not split evenly"),
        (job(env={"RANK": "3"}), "reserved"),
        (job(max_retries=-1), "max_retries must be >= 0"),
        (pb.Job(command=["python", "t.py"]), "a job run by agents needs GPUs"),
        (job(working_directory="../../.."), "job.working_directory '../../..' has a '..' segment"),
        (job(working_directory="/home/ana/../../etc"), "without them \\(an absolute path such as"),
    ],
)
def test_bad_jobs_get_a_clear_error(cluster: Cluster, submitted: pb.Job, expected: str) -> None:
    register(cluster, "n1", "A100-80")
    with pytest.raises(InvalidArgument, match=expected):
        cluster.client.submit("lab", submitted)
    assert list(cluster.client.list_jobs("lab")) == []


def test_least_capable_fitting_cards_are_chosen(cluster: Cluster) -> None:
    register(cluster, "big", "A100-80", "A100-80")
    register(cluster, "small", "T4", "T4")
    fp16 = cluster.client.submit("lab", job(1, 16, pb.PRECISION_FP16), "fp16")
    bf16 = cluster.client.submit("lab", job(1, 0, pb.PRECISION_BF16), "bf16")
    assert cluster.wait_for(fp16.name, (pb.JOB_STATE_RUNNING,)).placement.nodes[0].node == "nodes/small"
    assert cluster.wait_for(bf16.name, (pb.JOB_STATE_RUNNING,)).placement.nodes[0].node == "nodes/big"
    holders = {c.job for n in cluster.client.list_nodes() for c in n.cards if c.job}
    assert holders == {fp16.name, bf16.name}


def test_a_task_carries_the_torchrun_launch(cluster: Cluster) -> None:
    register(cluster, "a", "A10", "A10")
    register(cluster, "b", "A10", "A10")
    submitted = cluster.client.submit(
        "lab", pb.Job(command=["python", "train.py", "--lr", "0.1"], resources=pb.Resources(nodes=2, gpus=4)), "dist"
    )
    first, second = wait_tasks(cluster, "a")[0], wait_tasks(cluster, "b")[0]
    running = cluster.client.get_job(submitted.name)
    endpoint = running.placement.rendezvous_endpoint
    assert endpoint.split(":")[0] == ("a.lab" if first.rank == 0 else "b.lab")
    for task in (first, second):
        assert task.argv[:5] == [
            "torchrun",
            "--nnodes=2",
            "--nproc-per-node=2",
            "--rdzv-backend=c10d",
            f"--rdzv-endpoint={endpoint}",
        ]
        assert task.argv[-3:] == ["train.py", "--lr", "0.1"]
        assert "--rdzv-id=lab-dist-0" in task.argv
        assert list(task.cards) == [0, 1]
        assert task.env["CUDA_DEVICE_ORDER"] == "PCI_BUS_ID"
    assert {first.rank, second.rank} == {0, 1}


def test_success_needs_every_rank(cluster: Cluster) -> None:
    register(cluster, "a", "T4")
    register(cluster, "b", "T4")
    submitted = cluster.client.submit(
        "lab", pb.Job(command=["python", "t.py"], resources=pb.Resources(nodes=2, gpus_per_node=1))
    )
    ta, tb = wait_tasks(cluster, "a")[0], wait_tasks(cluster, "b")[0]
    tasks_of(cluster, "a", [status(ta, agent.TASK_STATE_EXITED, 0)])
    assert cluster.client.get_job(submitted.name).state == pb.JOB_STATE_RUNNING
    assert tasks_of(cluster, "a") == []
    tasks_of(cluster, "b", [status(tb, agent.TASK_STATE_EXITED, 0)])
    done = cluster.client.get_job(submitted.name)
    assert done.state == pb.JOB_STATE_SUCCEEDED
    assert done.attempts[0].outcome == pb.JOB_STATE_SUCCEEDED


def test_failures_are_retried_then_fail_with_the_reason(cluster: Cluster) -> None:
    register(cluster, "a", "T4")
    submitted = cluster.client.submit("lab", job(1, max_retries=1))
    first = wait_tasks(cluster, "a")[0]
    tasks_of(cluster, "a", [status(first, agent.TASK_STATE_RUNNING)])
    tasks_of(cluster, "a", [status(first, agent.TASK_STATE_EXITED, 3)])
    second = wait_tasks(cluster, "a")[0]
    assert second.attempt == 1
    assert second.env["ATELIER_RESTART_COUNT"] == "1"
    tasks_of(cluster, "a", [status(second, agent.TASK_STATE_EXITED, 3)])
    failed = cluster.client.get_job(submitted.name)
    assert failed.state == pb.JOB_STATE_FAILED
    assert "exit code 3 on nodes/a (rank 0)" in failed.reason
    assert failed.restart_count == 1
    assert [a.outcome for a in failed.attempts] == [pb.JOB_STATE_FAILED, pb.JOB_STATE_FAILED]


def test_cancel_stops_the_tasks_and_frees_the_cards(cluster: Cluster) -> None:
    register(cluster, "a", "T4")
    submitted = cluster.client.submit("lab", job(1))
    task = wait_tasks(cluster, "a")[0]
    tasks_of(cluster, "a", [status(task, agent.TASK_STATE_RUNNING)])
    cancelled = cluster.client.cancel(submitted.name)
    assert cancelled.state == pb.JOB_STATE_CANCELLED
    assert tasks_of(cluster, "a", [status(task, agent.TASK_STATE_RUNNING)]) == []  # the agent is told to stop it
    assert cluster.client.get_node("nodes/a").cards[0].job == submitted.name  # held until the process is gone
    tasks_of(cluster, "a", [status(task, agent.TASK_STATE_EXITED, -15)])
    assert cluster.client.get_node("nodes/a").cards[0].job == ""
    with pytest.raises(FailedPrecondition, match="already ended"):
        cluster.client.cancel(submitted.name)


def test_a_lost_node_requeues_its_jobs(cluster: Cluster) -> None:
    register(cluster, "a", "T4")
    submitted = cluster.client.submit("lab", job(1, max_retries=2))
    task = wait_tasks(cluster, "a")[0]
    tasks_of(cluster, "a", [status(task, agent.TASK_STATE_RUNNING)])
    register(cluster, "b", "T4")
    deadline = time.monotonic() + 30
    while cluster.client.get_node("nodes/a").state != pb.NODE_STATE_LOST:
        assert time.monotonic() < deadline
        tasks_of(cluster, "b")
        time.sleep(0.2)
    moved = wait_tasks(cluster, "b")[0]
    assert moved.attempt == 1
    job_now = cluster.client.get_job(submitted.name)
    assert "nodes/a stopped heartbeating" in job_now.attempts[0].reason
    assert cluster.agents.heartbeat("nodes/a", [], []).registered is False


def test_unknown_job_and_node(cluster: Cluster) -> None:
    with pytest.raises(NotFound):
        cluster.client.get_job("projects/lab/jobs/nope")
    with pytest.raises(NotFound):
        cluster.client.get_node("nodes/nope")


def test_a_node_that_cannot_be_right_is_refused_and_the_cluster_keeps_working(cluster: Cluster) -> None:
    register(cluster, "good", "A10")
    found = DeclaredInventory(inventory("A10", "A10"), card_spec).inventory()

    def node(**changes: object) -> pb.Node:
        made = pb.Node(address="bad.lab", cards=found.cards, links=found.links, discovery="declared")
        for key, value in changes.items():
            if key == "links":
                del made.links[:]
                made.links.extend(value)  # type: ignore[arg-type]
            else:
                setattr(made, key, value)
        return made

    bad_type = node(links=[pb.CardLink(a=0, b=1, type=99)])  # type: ignore[arg-type]
    missing_card = node(links=[pb.CardLink(a=0, b=7, type=pb.LINK_TYPE_NVLINK)])
    cards = [pb.Card(index=i, model="A10", memory_total_bytes=GIB, compute_capability="8.6") for i in range(65)]
    for refused, expected in [
        (bad_type, "link 0-1 has type 99; types are"),
        (missing_card, r"link 0-7 does not join two of the node's cards \(\[0, 1\]\)"),
        (node(cpus=-8), "node reports -8 CPUs"),
        (pb.Node(address="bad.lab", cards=cards), "65 cards on one node; at most 64"),
    ]:
        with pytest.raises(InvalidArgument, match=expected):
            cluster.agents.register(refused, "bad")

    assert cluster.client.submit("lab", job(1)).name.startswith("projects/lab/jobs/")


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"executor": 99}, "job.executor is 99; allowed: EXECUTOR_KIND_AGENTS, EXECUTOR_KIND_SLURM"),
        ({"launcher": 99}, "job.launcher is 99; allowed: LAUNCHER_TORCHRUN"),
    ],
)
def test_an_enum_value_outside_its_enum_is_refused(cluster: Cluster, fields: dict[str, int], expected: str) -> None:
    register(cluster, "a", "A10")
    with pytest.raises(InvalidArgument, match=expected):
        cluster.client.submit("lab", job(1, **fields))
    with pytest.raises(InvalidArgument, match="job.resources.precision is 99; allowed: PRECISION_FP32"):
        cluster.client.submit("lab", job(1, precision=99))
    assert list(cluster.client.list_jobs("lab")) == []


def test_log_lines_and_state_filters_outside_their_enums_are_refused(cluster: Cluster) -> None:
    register(cluster, "a", "A10")
    name = cluster.client.submit("lab", job(1)).name
    for line, expected in [
        (pb.LogLine(text="x", stream=99), "lines\\[1\\].stream is 99; allowed: LOG_STREAM_STDOUT, LOG_STREAM_STDERR"),  # type: ignore[arg-type]
        (pb.LogLine(text="x", attempt=-1), "lines\\[1\\].attempt is -1; allowed: 0 or more"),
        (pb.LogLine(text="x", rank=-2), "lines\\[1\\].rank is -2; allowed: 0 or more"),
        (pb.LogLine(text="x", time=timestamp_pb2.Timestamp(seconds=10**13)), "lines\\[1\\].time has seconds 1"),
    ]:
        with pytest.raises(InvalidArgument, match=expected):
            cluster.agents.write_logs(name, [pb.LogLine(text="fine"), line])
    assert "fine" not in [kept.text for read in cluster.client.logs(name) for kept in read.lines]  # none half-written
    with pytest.raises(InvalidArgument, match="states is 99; allowed: JOB_STATE_PENDING"):
        list(cluster.client.list_jobs("lab", states=[pb.JOB_STATE_RUNNING, 99]))  # type: ignore[list-item]
    assert [j.name for j in cluster.client.list_jobs("lab", states=[pb.JOB_STATE_PENDING, pb.JOB_STATE_RUNNING])] == [
        name
    ]


def test_datasets_at_one_path_and_nul_in_env_are_refused(cluster: Cluster, tmp_path: Path) -> None:
    register(cluster, "a", "A10")
    (tmp_path / "digits").mkdir()
    (tmp_path / "digits" / "labels.csv").write_bytes(b"a,1\n")
    push(DataClient.at(cluster.data_address), tmp_path / "digits", parse_dataset_ref("digits", "lab"))
    twice = [pb.DatasetInput(dataset="digits@v1"), pb.DatasetInput(dataset="digits@latest")]

    with pytest.raises(InvalidArgument, match="two datasets would be fetched into digits: give each its own path"):
        cluster.client.submit("lab", job(1, datasets=twice))
    with pytest.raises(InvalidArgument, match="environment variable SECRET holds a NUL character"):
        cluster.client.submit("lab", job(1, env={"SECRET": "a\x00b"}))
    assert list(cluster.client.list_jobs("lab")) == []
