"""What keeps a cycle fast must not change what it decides: the queue's running totals, the memo of what did not
fit, the early end of a cycle, and the free-capacity index kept across take and release."""

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


def running(job_id: str, node: str, indices: tuple[int, ...], max_runtime_s: float = 100.0) -> RunningJob:
    req = JobRequest(job_id, gpus_per_node=len(indices), max_runtime_s=max_runtime_s)
    return RunningJob(req, Placement((NodeAssignment(node, indices),)), start_time=0.0)


def test_the_queue_keeps_demand_gang_shapes_and_shortest_runtimes() -> None:
    a = JobRequest.of("a", gpus=2, allowed_models=["P100"], max_runtime_s=50.0)
    b = JobRequest.of("b", gpus=2, allowed_models=["P100"], max_runtime_s=20.0, cpus_per_node=4)
    c = JobRequest.of("c", nodes=2, gpus_per_node=4)
    queue = JobQueue([a, b])
    queue.add(c)
    assert queue.demand == {a.cards: 4, c.cards: 8}
    assert a.gang == b.gang != c.gang
    assert a.shape != b.shape
    assert queue.gangs == {a.gang: 2, c.gang: 1}
    assert queue.wide == {(a.cards, 2): 2, (c.cards, 4): 2}
    assert queue.shortest_runtime(a.gang) == 20.0
    queue.remove("b")
    assert queue.shortest_runtime(a.gang) == 50.0
    assert queue.demand == {a.cards: 2, c.cards: 8}
    queue.remove("a")
    queue.remove("c")
    assert (queue.demand, queue.gangs, queue.wide) == ({}, {}, {})
    assert queue.shortest_runtime(a.gang) == float("inf")


def test_a_short_job_behind_many_long_ones_of_its_gang_shape_still_backfills() -> None:
    nodes = [declared_node("n1", "A10", 4), declared_node("n2", "A10", 4)]
    busy = [running("r1", "n1", (0, 1, 2), max_runtime_s=100.0), running("r2", "n2", (0, 1, 2, 3), 1000.0)]
    head = JobRequest.of("head", gpus=4, submit_time=0.0)
    longs = [JobRequest.of(f"long-{i}", gpus=1, max_runtime_s=500.0, submit_time=1.0 + i) for i in range(30)]
    short = JobRequest.of("short", gpus=1, max_runtime_s=50.0, submit_time=100.0)
    decisions = schedule(nodes, [head, *longs, short], busy, 10.0, PolicyConfig())
    assert [r.job_id for r in decisions.reservations] == ["head"]
    assert [s.job_id for s in decisions.starts] == ["short"]  # the free card of n1 ends before t=100
    assert decisions.waiting["long-29"].startswith("waiting: resources (would delay the start reserved for head")


def test_a_job_asking_fewer_cpus_fits_where_one_asking_more_did_not() -> None:
    nodes = [declared_node("n", "A10", 4, cpus=16)]
    big = JobRequest.of("big", gpus=1, cpus_per_node=32, submit_time=0.0)
    bigger = JobRequest.of("bigger", gpus=1, cpus_per_node=48, submit_time=1.0)
    small = JobRequest.of("small", gpus=1, cpus_per_node=8, submit_time=2.0)
    decisions = schedule(nodes, [big, bigger, small], [], 10.0, PolicyConfig())
    assert [s.job_id for s in decisions.starts] == ["small"]
    assert {"big", "bigger"} <= decisions.waiting.keys()


def test_a_cycle_stops_early_but_explains_every_job() -> None:
    nodes = [declared_node("n", "T4", 2)]
    busy = [running("r", "n", (0,), max_runtime_s=100.0)]
    jobs = [JobRequest.of(f"j{i}", gpus=2, max_runtime_s=1000.0, submit_time=float(i)) for i in range(100)]
    short = JobRequest.of("short", gpus=1, max_runtime_s=50.0, submit_time=500.0)
    long = JobRequest.of("long", gpus=1, submit_time=600.0)
    decisions = schedule(nodes, [*jobs, short, long], busy, 10.0, PolicyConfig())
    assert [s.job_id for s in decisions.starts] == ["short"]
    assert len(decisions.waiting) == 101
    assert decisions.waiting["j0"].startswith("reserved: starts by t=100 on n")
    assert decisions.waiting["j99"].startswith("waiting: resources")
    assert decisions.waiting["long"].startswith("waiting: resources")


def test_a_cycle_that_stops_once_nothing_fits_still_explains_every_job() -> None:
    nodes = [declared_node("n", "T4", 2)]
    busy = [running("r", "n", (0,), max_runtime_s=100.0)]
    jobs = [JobRequest.of(f"j{i}", gpus=2, submit_time=float(i)) for i in range(50)]
    decisions = schedule(nodes, jobs, busy, 10.0, PolicyConfig())
    assert decisions.starts == []
    assert decisions.waiting["j0"].startswith("reserved: starts by t=100 on n")
    assert {decisions.waiting[f"j{i}"] for i in range(1, 50)} == {"waiting: resources (no free cards fit)"}


def test_the_capacity_index_follows_take_and_release() -> None:
    nodes = [declared_node("a", "A10", 4), declared_node("b", "A10", 4)]
    job = running("r", "a", (0, 1, 2))
    capacity = FreeCapacity.build(nodes, [job])
    (kind,) = capacity.kinds
    assert capacity.at_least[kind] == [2, 2, 1, 1, 1]
    assert capacity.held[job.request.cards] == {kind: 3}
    assert capacity.ending == [(100.0, "r")]
    capacity.release_job(job)
    assert capacity.at_least[kind] == [2, 2, 2, 2, 2]
    assert capacity.held[job.request.cards] == {kind: 0}
    assert (capacity.ending, capacity.running) == ([], {})
    assert capacity.free_by_kind[kind] == capacity.total_free == 8
