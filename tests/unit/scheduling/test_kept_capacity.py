"""A capacity kept across cycles (the simulator's): backfill's memo of node readiness gives the walk's answer, and
first fit's bucket index picks the node the inventory scan picks."""

from __future__ import annotations

import random

from atelier.scheduling import JobRequest, Node, NodeAssignment, Placement, RunningJob, declared_node
from atelier.scheduling.backfill import reserve
from atelier.scheduling.capacity import FreeCapacity
from atelier.scheduling.inventory import Card, Interconnect, uniform_topology
from atelier.scheduling.placement import FirstFit
from atelier.scheduling.request import CardFilter

MODELS = ("T4", "V100M16", "A100-80")


def mixed_node(name: str, *models: str) -> Node:
    cards = tuple(
        Card(i, card.model, card.memory_total_bytes, card.capability, f"GPU-{name}-{i}")
        for i, card in enumerate(declared_node("x", m, 1).cards[0] for m in models)
    )
    return Node(name, cards, uniform_topology(len(cards), Interconnect.SYSTEM), cpus=32, memory_bytes=256 << 30)


def cluster(rng: random.Random) -> list[Node]:
    nodes = [
        declared_node(f"n{i:02d}", rng.choice(MODELS), rng.choice((4, 8)), cpus=32, memory_gib=256) for i in range(30)
    ]
    nodes.append(mixed_node("mixed-a", "T4", "T4", "A100-80", "A100-80"))
    nodes.append(mixed_node("mixed-b", "V100M16", "A100-80", "A100-80", "T4"))
    return nodes


def request(rng: random.Random, job_id: str, now: float) -> JobRequest:
    models = frozenset(rng.sample(MODELS, rng.choice((1, 2, 3))))
    nodes = rng.choice((1, 1, 1, 2, 3))
    return JobRequest(
        job_id,
        nodes,
        rng.choice((1, 2, 4, 8)) if nodes == 1 else rng.choice((2, 4)),
        CardFilter(allowed_models=models),
        cpus_per_node=rng.choice((0.0, 4.0, 12.0)),
        memory_bytes_per_node=rng.choice((0, 64 << 30)),
        max_runtime_s=rng.choice((600.0, 3600.0, 7200.0)),
        submit_time=now,
    )


def test_kept_capacity_reserves_exactly_what_the_walk_reserves_as_jobs_come_and_go() -> None:
    rng = random.Random(7)
    nodes = cluster(rng)
    kept, fresh_running = FreeCapacity(nodes, kept=True), {}
    first_fit = FirstFit()
    heads = [request(rng, f"head-{i}", 0.0) for i in range(5)]  # the same few heads, as a waiting head job is
    reserved_later = 0
    for step in range(400):
        now = step * 60.0
        for arrival in range(3):
            job = request(rng, f"job-{step}-{arrival}", now)
            choice = first_fit.place(job, kept)
            if choice is not None:
                placement = Placement(tuple(NodeAssignment(kept.nodes[o].name, cards) for o, cards in choice))
                running = RunningJob(job, placement, now, stopping=rng.random() < 0.05)
                kept.take_job(running)
                fresh_running[running.job_id] = running
        ended = [j for j, r in fresh_running.items() if r.expected_end <= now or rng.random() < 0.01]
        for job_id in ended:  # at the end of the maximum run time, or earlier
            kept.release_job(fresh_running.pop(job_id))
        head = heads[step % 5]
        walked = reserve(head, FreeCapacity.build(nodes, fresh_running.values()), now)
        assert reserve(head, kept, now) == walked
        reserved_later += walked is not None and walked[0] > now
    assert reserved_later > 50  # many of the reservations waited for running jobs to end


def test_first_fit_takes_the_first_node_in_inventory_order_on_a_busy_cluster() -> None:
    nodes = [declared_node(f"n{i:03d}", "A100-80", 8) for i in range(200)]
    capacity = FreeCapacity(nodes)
    for ordinal in range(200):
        if ordinal not in (150, 170):
            capacity.take(ordinal, range(7), 0.0, 0)  # one card left: only nodes 150 and 170 hold 4 GPUs
    choice = FirstFit().place(JobRequest("wide", gpus_per_node=4), capacity)
    assert choice == [(150, (0, 1, 2, 3))]
    narrow = FirstFit().place(JobRequest("narrow", gpus_per_node=1), capacity)
    assert narrow == [(0, (7,))]
