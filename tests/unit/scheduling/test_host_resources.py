"""CPUs and host memory in placement and in the submission check: a node's free CPUs and memory are its totals
less what the jobs running on it asked."""

from __future__ import annotations

import pytest

from atelier.errors import FailedPrecondition
from atelier.scheduling import (
    JobRequest,
    NodeAssignment,
    Placement,
    PolicyConfig,
    RunningJob,
    check_feasible,
    declared_node,
    infeasibility,
    schedule,
)


def holding(job_id: str, node: str, cards: tuple[int, ...], cpus: float = 0.0, memory_gib: float = 0.0) -> RunningJob:
    request = JobRequest.of(job_id, gpus=len(cards), cpus_per_node=cpus, memory_gib_per_node=memory_gib)
    return RunningJob(request, Placement((NodeAssignment(node, cards),)), start_time=0.0)


def test_a_node_whose_cpus_running_jobs_asked_for_is_passed_over() -> None:
    # "tight" is the better fit by cards (fewer free), but its running job asked 12 of its 16 CPUs.
    nodes = [declared_node("tight", "A10", 4, cpus=16), declared_node("roomy", "A10", 4, cpus=16)]
    busy = [holding("r", "tight", (0, 1), cpus=12)]
    decisions = schedule(nodes, [JobRequest.of("j", gpus=1, cpus_per_node=8)], busy, 1.0, PolicyConfig())
    assert [(s.job_id, s.placement.assignments[0].node) for s in decisions.starts] == [("j", "roomy")]
    few = schedule(nodes, [JobRequest.of("k", gpus=1, cpus_per_node=4)], busy, 1.0, PolicyConfig())
    assert few.starts[0].placement.assignments[0].node == "tight"


def test_host_memory_running_jobs_asked_for_is_not_given_twice() -> None:
    nodes = [declared_node("n", "L4", 4, memory_gib=128)]
    busy = [holding("r", "n", (0,), memory_gib=100)]
    decisions = schedule(nodes, [JobRequest.of("j", gpus=1, memory_gib_per_node=64)], busy, 1.0, PolicyConfig())
    assert decisions.starts == []
    assert decisions.waiting["j"] == "reserved: starts by t=86400 on n"  # when r ends and gives its memory back


def test_a_gang_needs_the_cpus_on_every_node() -> None:
    nodes = [declared_node(name, "A10", 2, cpus=32) for name in ("a", "b", "c")]
    busy = [holding("r", "b", (0,), cpus=30)]
    gang = JobRequest.of("g", nodes=2, gpus_per_node=1, cpus_per_node=16)
    decisions = schedule(nodes, [gang], busy, 1.0, PolicyConfig())
    assert sorted(a.node for a in decisions.starts[0].placement.assignments) == ["a", "c"]


def test_a_request_for_more_cpus_than_any_node_has_is_refused_naming_them() -> None:
    nodes = [declared_node("big", "A100-80", 8, cpus=32), declared_node("small", "L4", 2, cpus=128)]
    request = JobRequest.of("j", gpus=4, min_gpu_memory_gib=40, cpus_per_node=64)
    with pytest.raises(FailedPrecondition) as refused:
        check_feasible(request, nodes)
    assert str(refused.value) == (
        "no node has 4 GPUs with >= 40 GiB and 64 CPUs; largest: 8 x A100-80 (only 32 CPUs) on nodes/big"
    )
    assert infeasibility(JobRequest.of("j", gpus=4, min_gpu_memory_gib=40, cpus_per_node=32), nodes) == ""


def test_a_request_for_more_host_memory_than_any_node_has_is_refused_naming_it() -> None:
    nodes = [declared_node("n", "A10", 4, memory_gib=256)]
    reason = infeasibility(JobRequest.of("j", gpus=1, memory_gib_per_node=512), nodes)
    assert reason == "no node has 1 GPU and 512 GiB host memory; largest: 4 x A10 (only 256 GiB host memory) on nodes/n"


def test_requests_say_gpu_and_cpu_in_the_singular_for_one() -> None:
    assert JobRequest.of("j", gpus=1, cpus_per_node=1).describe() == "1 GPU and 1 CPU"
    two = JobRequest.of("j", nodes=2, gpus_per_node=4, precision="bf16", cpus_per_node=8, memory_gib_per_node=64)
    assert two.describe() == "2 nodes x 4 GPUs with bf16 and 8 CPUs and 64 GiB host memory"
