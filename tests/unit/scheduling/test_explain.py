"""A start says where it was placed and why: the request, the kinds tried and in which order, what it kept free
and whether it was backfilled."""

from __future__ import annotations

from atelier.scheduling import (
    Card,
    Interconnect,
    JobRequest,
    Node,
    NodeAssignment,
    Placement,
    PolicyConfig,
    RunningJob,
    declared_node,
    schedule,
)
from atelier.scheduling.inventory import uniform_topology
from services.scheduler.cycle import explanation_of


def mixed_node(name: str, *models: str) -> Node:
    """One node with cards of several models (in this order)."""
    cards = tuple(
        Card(i, model.model, model.memory_total_bytes, model.capability, f"GPU-{name}-{i}")
        for i, model in enumerate(declared_node("x", m, 1).cards[0] for m in models)
    )
    return Node(name, cards, uniform_topology(len(cards), Interconnect.SYSTEM))


def holding(job_id: str, node: str, cards: tuple[int, ...], **fields: object) -> RunningJob:
    request = JobRequest.of(job_id, gpus=len(cards), **fields)  # type: ignore[arg-type]
    return RunningJob(request, Placement((NodeAssignment(node, cards),)), start_time=0.0)


DEMO = [declared_node("ampere", "A100-80", 4, nvlink_island=2), mixed_node("ada", "L40S", "L40S", "L4", "L4")]


def test_a_gang_over_two_kinds_says_what_it_asked_tried_and_kept_free() -> None:
    gang = JobRequest.of("digits", nodes=2, gpus_per_node=1, min_gpu_memory_gib=16, precision="bf16")
    text = schedule(DEMO, [gang], [], 0.0, PolicyConfig()).starts[0].explanation
    assert text.startswith("2 nodes x 1 GPU with >= 16 GiB and bf16: A100-80 on ampere[0], L4 on ada[2] ")
    assert "L4 on ada[2] (least capable there; L40S kept free)" in text
    assert "tried least capable first (fewest native precisions, then least memory): A100-80, L4, L40S" in text
    assert "no one kind had 2 free nodes" in text
    assert text.endswith("; backfilled: no")
    assert "\n" not in text


def test_a_kind_tried_first_but_full_is_named() -> None:
    busy = [holding("r", "ampere", (0, 1, 2))]
    start = schedule(DEMO, [JobRequest.of("j", gpus=2, min_gpu_memory_gib=40)], busy, 0.0, PolicyConfig()).starts[0]
    assert start.explanation.startswith("2 GPUs with >= 40 GiB: L40S on ada[0,1]; ")
    assert "no room on A100-80" in start.explanation
    assert "kept free" not in start.explanation  # the L4s do not fit a 40 GiB request


def test_a_request_only_one_kind_fits_says_so() -> None:
    start = schedule(DEMO, [JobRequest.of("j", gpus=1, min_gpu_memory_gib=60)], [], 0.0, PolicyConfig()).starts[0]
    assert start.explanation == "1 GPU with >= 60 GiB: A100-80 on ampere[0]; only A100-80 fits; backfilled: no"


def test_kinds_others_need_are_named_as_tried_last() -> None:
    nodes = [declared_node("p", "P100", 2), declared_node("t", "T4", 2)]
    busy = [holding("r", "p", (0,))]
    waiting = JobRequest.of("p100-only", gpus=2, allowed_models=["P100"], submit_time=0.0)
    flexible = JobRequest.of("any", gpus=1, submit_time=1.0)
    decisions = schedule(nodes, [waiting, flexible], busy, 10.0, PolicyConfig())
    start = next(s for s in decisions.starts if s.job_id == "any")
    assert start.explanation.startswith("1 GPU: T4 on t[")
    assert "tried kinds that jobs with fewer options need last, then least capable first" in start.explanation
    assert ": T4, P100" in start.explanation


def test_a_backfilled_start_names_the_job_it_cannot_delay() -> None:
    nodes = [declared_node("n1", "A10", 4), declared_node("n2", "A10", 4)]
    busy = [holding("r1", "n1", (0, 1, 2), max_runtime_s=100.0), holding("r2", "n2", (0, 1, 2, 3), max_runtime_s=1e3)]
    head = JobRequest.of("head", gpus=4, submit_time=0.0)
    short = JobRequest.of("short", gpus=1, max_runtime_s=50.0, submit_time=1.0)
    start = schedule(nodes, [head, short], busy, 10.0, PolicyConfig()).starts[0]
    assert start.job_id == "short"
    assert start.explanation.endswith("backfilled: yes, ahead of head (ends before its reserved start)")


def test_first_fit_says_it_took_the_first_nodes_and_the_simulator_gets_no_reasons() -> None:
    job = JobRequest.of("j", gpus=1)
    first = schedule(DEMO, [job], [], 0.0, PolicyConfig(placement="first-fit")).starts[0]
    assert "first-fit took the first nodes in inventory order that fit" in first.explanation
    quiet = schedule(DEMO, [job], [], 0.0, PolicyConfig(), explain=False).starts[0]
    assert quiet.reasons is None
    assert quiet.explanation == "best-fit: A100-80 on ampere[0]"


def test_a_start_after_preempting_says_so_in_the_service() -> None:
    start = schedule(DEMO, [JobRequest.of("j", gpus=1, min_gpu_memory_gib=60)], [], 0.0, PolicyConfig()).starts[0]
    after = explanation_of(start, "waiting: preempted jobs to stop")
    assert after == f"{start.explanation}; preempted lower-priority jobs to start"
    assert explanation_of(start, "waiting: resources") == start.explanation
