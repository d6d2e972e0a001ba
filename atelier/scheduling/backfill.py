"""EASY backfill: the reservation of the job at the head of the queue.

The head job's start is the earliest time at which, with running jobs ending no later than their maximum run
times, enough nodes hold enough fitting free cards (the shadow time). Its nodes are reserved: a later job may
start on them only if its own maximum run time ends before the shadow time, and on other nodes at any time,
so no backfilled job can delay the head job (Lifka's EASY scheduler; Slurm's sched/backfill works alike).

On a capacity kept across cycles the same answer comes from each node's memoised readiness (see `readiness`).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from atelier.scheduling.capacity import FreeCapacity
from atelier.scheduling.jobs import RunningJob
from atelier.scheduling.readiness import NOW, Readiness
from atelier.scheduling.request import JobRequest


@dataclass(frozen=True)
class Reservation:
    """Nodes held for a job that cannot start yet, and when it will start at the latest."""

    job_id: str
    start_time: float
    nodes: tuple[str, ...]


def reserve(request: JobRequest, capacity: FreeCapacity, now: float) -> tuple[float, list[int]] | None:
    """(shadow time, node ordinals) for a job that does not fit now; None when it would not fit even with every
    running job ended (cards unhealthy, nodes drained). The running jobs are those `capacity` holds."""
    if capacity.changes is not None:
        return _reserve_kept(request, capacity, now)
    accepted = set(capacity.kinds_for(request.cards))
    gpus, want = request.gpus_per_node, request.nodes
    extra_cards: dict[int, int] = {}
    extra_cpus: dict[int, float] = {}
    extra_memory: dict[int, int] = {}

    def fits(ordinal: int) -> bool:
        if capacity.cpus[ordinal] + extra_cpus.get(ordinal, 0.0) < request.cpus_per_node:
            return False
        if capacity.memory[ordinal] + extra_memory.get(ordinal, 0) < request.memory_bytes_per_node:
            return False
        return len(capacity.fitting(ordinal, request.cards)) + extra_cards.get(ordinal, 0) >= gpus

    ready = {o for o in _candidates(request, capacity) if fits(o)}
    if len(ready) >= want:
        return now, _best(ready, capacity, want)
    possible = _possible(request, capacity)
    for job in _ending(capacity):
        touched = False
        for assignment in job.placement.assignments:
            ordinal = capacity.ordinal.get(assignment.node)
            if ordinal not in possible or ordinal in ready:
                continue
            usable = capacity.usable[ordinal]
            if capacity.kind_of[ordinal] is not None:
                count = len(usable.intersection(assignment.cards))
            else:
                kinds = capacity.card_kinds[ordinal]
                count = sum(1 for i in assignment.cards if i in usable and kinds[i] in accepted)
            extra_cards[ordinal] = extra_cards.get(ordinal, 0) + count
            extra_cpus[ordinal] = extra_cpus.get(ordinal, 0.0) + job.request.cpus_per_node
            extra_memory[ordinal] = extra_memory.get(ordinal, 0) + job.request.memory_bytes_per_node
            if fits(ordinal):
                ready.add(ordinal)
                touched = True
        if touched and len(ready) >= want:
            end = now if job.stopping else max(job.expected_end, now)
            return end, _best(ready, capacity, want)
    return None


def _reserve_kept(request: JobRequest, capacity: FreeCapacity, now: float) -> tuple[float, list[int]] | None:
    """`reserve` from the nodes' memoised readiness: the same shadow time and nodes."""
    readiness = capacity.readiness.get(request.shape)
    if readiness is None:
        if len(capacity.readiness) >= 1024:
            capacity.readiness.clear()
        readiness = capacity.readiness[request.shape] = Readiness(request, capacity, _possible(request, capacity))
    else:
        readiness.update(capacity)
    found = readiness.shadow(request.nodes)
    if found is None:
        return None
    moment, ready = found
    if moment == NOW:
        return now, _best(set(ready), capacity, request.nodes)
    job = capacity.running[moment[1]]
    end = now if job.stopping else max(job.expected_end, now)
    return end, _best(set(ready), capacity, request.nodes)


def _possible(request: JobRequest, capacity: FreeCapacity) -> frozenset[int]:
    """The nodes with enough usable cards for one gang member (memoised per gang shape)."""
    found = capacity.could_hold.get(request.gang)
    if found is None:
        cards, kinds, usable = request.cards, capacity.card_kinds, capacity.usable
        found = frozenset(
            ordinal
            for ordinal in range(len(capacity.nodes))
            if sum(1 for i in usable[ordinal] if cards.accepts(kinds[ordinal][i])) >= request.gpus_per_node
        )
        capacity.could_hold[request.gang] = found
    return found


def _ending(capacity: FreeCapacity) -> Iterator[RunningJob]:
    """The running jobs in the order their cards come free: those already stopping first, then by the end of
    their maximum run times (the caller stops as soon as enough nodes are ready)."""
    running = capacity.running
    for _, job_id in capacity.ending:
        yield running[job_id]


def _candidates(request: JobRequest, capacity: FreeCapacity) -> list[int]:
    found = list(capacity.mixed)
    for kind in capacity.kinds_for(request.cards):
        buckets = capacity.buckets.get(kind, [])
        for count in range(request.gpus_per_node, len(buckets)):
            found.extend(buckets[count])
    return found


def _best(ready: set[int], capacity: FreeCapacity, want: int) -> list[int]:
    """Least scarce kinds first, then by name for a stable choice."""
    kind_of, nodes = capacity.kind_of, capacity.nodes

    def key(ordinal: int) -> tuple[int, tuple[object, ...], str]:
        kind = kind_of[ordinal]
        return (0, kind.scarcity, nodes[ordinal].name) if kind else (1, (), nodes[ordinal].name)

    return sorted(ready, key=key)[:want]
