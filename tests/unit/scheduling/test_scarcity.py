"""Scarcity-aware best fit: a job that could run on many card kinds leaves the scarce ones to jobs that cannot,
and a small job does not break up the whole node a wider pending job needs."""

from __future__ import annotations

from atelier.scheduling import (
    FreeCapacity,
    JobQueue,
    JobRequest,
    NodeAssignment,
    Placement,
    PolicyConfig,
    RunningJob,
    declared_node,
    schedule,
)
from atelier.scheduling.contention import Contention


def running(job_id: str, node: str, indices: tuple[int, ...], **request: object) -> RunningJob:
    req = JobRequest(job_id, gpus_per_node=len(indices), **request)  # type: ignore[arg-type]
    return RunningJob(req, Placement((NodeAssignment(node, indices),)), start_time=0.0)


def test_a_flexible_job_leaves_the_p100_to_the_job_that_accepts_only_p100() -> None:
    # "Least capable first" alone gives the flexible job the P100 and the P100-only job waits with a V100 free.
    nodes = [declared_node("p100", "P100", 1), declared_node("v100", "V100M16", 1)]
    flexible = JobRequest.of("flexible", gpus=1, submit_time=0.0)
    p100_only = JobRequest.of("p100-only", gpus=1, allowed_models=["P100"], submit_time=1.0)
    decisions = schedule(nodes, [flexible, p100_only], [], 10.0, PolicyConfig())
    assert {s.job_id: s.placement.nodes for s in decisions.starts} == {
        "flexible": ("v100",),
        "p100-only": ("p100",),
    }


def test_an_80_gib_bf16_card_is_kept_for_the_job_that_needs_it() -> None:
    # By precision count alone an A100-80 (no fp8) ranks below an L40S, so a 24 GiB bf16 job would take it.
    nodes = [declared_node("a100", "A100-80", 1), declared_node("l40s", "L40S", 1)]
    small = JobRequest.of("24g", gpus=1, min_gpu_memory_gib=24, precision="bf16", submit_time=0.0)
    big = JobRequest.of("80g", gpus=1, min_gpu_memory_gib=80, precision="bf16", submit_time=1.0)
    decisions = schedule(nodes, [small, big], [], 10.0, PolicyConfig())
    assert {s.job_id: s.placement.nodes for s in decisions.starts} == {"24g": ("l40s",), "80g": ("a100",)}


def test_a_pending_8_gpu_job_keeps_a_whole_node_unfragmented() -> None:
    # The V100M16 node is whole and the least capable kind; the T4 node has two cards left. Taking a V100 for
    # the 1-GPU job would leave the 8-GPU job no node.
    nodes = [declared_node("v100", "V100M16", 8), declared_node("t4", "T4", 8)]
    busy = [running("r", "t4", (0, 1, 2, 3, 4, 5))]
    small = JobRequest.of("small", gpus=1, submit_time=0.0)
    wide = JobRequest.of("wide", gpus=8, submit_time=1.0)
    decisions = schedule(nodes, [small, wide], busy, 10.0, PolicyConfig())
    assert {s.job_id: s.placement.nodes for s in decisions.starts} == {"small": ("t4",), "wide": ("v100",)}


def test_a_whole_node_is_used_when_no_wider_job_waits() -> None:
    nodes = [declared_node("v100", "V100M16", 8), declared_node("t4", "T4", 8)]
    busy = [running("r", "t4", (0, 1, 2, 3, 4, 5))]
    decisions = schedule(nodes, [JobRequest.of("small", gpus=1)], busy, 10.0, PolicyConfig())
    assert decisions.starts[0].placement.nodes == ("v100",)  # least capable first


def test_cards_held_by_constrained_jobs_steer_flexible_jobs_away() -> None:
    # Nobody waits for a P100, but P100-only jobs hold half of them: they are the likeliest next P100 users.
    nodes = [declared_node("p100", "P100", 4), declared_node("v100", "V100M16", 4)]
    busy = [running("r", "p100", (0, 1), cards=JobRequest.of("x", allowed_models=["P100"]).cards)]
    decisions = schedule(nodes, [JobRequest.of("flexible", gpus=1)], busy, 10.0, PolicyConfig())
    assert decisions.starts[0].placement.nodes == ("v100",)
    idle = schedule(nodes, [JobRequest.of("flexible", gpus=1)], [], 10.0, PolicyConfig())
    assert idle.starts[0].placement.nodes == ("p100",)  # no claim on the P100s: least capable first


def test_claims_count_only_jobs_with_fewer_options() -> None:
    nodes = [declared_node("p100", "P100", 2), declared_node("v100", "V100M16", 2)]
    capacity = FreeCapacity.build(nodes, [])
    p100_only = JobRequest.of("a", gpus=2, allowed_models=["P100"])
    queue = JobQueue([p100_only, JobRequest.of("b", gpus=1), JobRequest.of("c", gpus=1, allowed_models=["V100M16"])])
    contention = Contention(capacity, queue.demand, queue.wide)
    flexible = JobRequest.of("d", gpus=1).cards
    (p100,) = capacity.kinds_for(p100_only.cards)
    claims = contention.claims(contention.kinds(flexible))
    assert claims[p100] == (2.0, 2.0)
    assert [k.model for k in contention.order(flexible, 1)] == ["V100M16", "P100"]  # P100 is spoken for
    assert contention.claims(contention.kinds(p100_only.cards)) == {}  # nothing is more constrained
