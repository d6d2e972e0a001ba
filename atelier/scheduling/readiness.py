"""When each node could hold one gang member of a request shape, kept up to date across cycles (backfill's memo).

EASY backfill (`backfill.reserve`) walks the running jobs in the order their cards come free until enough nodes
could hold the head job. That walk depends on each node alone: a node is ready at the end of the first running
job on it (in that order) after which its free cards, CPUs and memory, plus those of the jobs ended so far on it,
fit one gang member. The shadow time is the `nodes`-th earliest such moment. A capacity kept across cycles (the
simulator's) remembers each node's moment per request shape and recomputes only the nodes whose capacity changed
since, which makes a reservation nearly free when the same head job waits cycle after cycle; the answer is the
walk's exactly (same order, same sums, same ties).
"""

from __future__ import annotations

from bisect import bisect_left, insort
from typing import TYPE_CHECKING

from atelier.scheduling.request import JobRequest

if TYPE_CHECKING:
    from atelier.scheduling.capacity import FreeCapacity

Moment = tuple[float, str]
"""(when the cards come free, job id): the running job whose end makes a node ready, in `capacity.ending` order."""

NOW: Moment = (float("-inf"), "")
"""A node that fits already (before any running job ends, even one already stopping)."""


class Readiness:
    """Per node that could ever hold one gang member of a shape: the moment it becomes ready (absent: never)."""

    def __init__(self, request: JobRequest, capacity: FreeCapacity, possible: frozenset[int]) -> None:
        self.request = request
        self.possible = possible
        self.moments: dict[int, Moment] = {}
        self.ordered: list[tuple[Moment, int]] = []
        for ordinal in possible:
            moment = ready_at(request, capacity, ordinal)
            if moment is not None:
                self.moments[ordinal] = moment
                self.ordered.append((moment, ordinal))
        self.ordered.sort()
        self.seen = len(_changes(capacity))

    def update(self, capacity: FreeCapacity) -> None:
        """Recompute the nodes whose capacity changed since the last call."""
        changes = _changes(capacity)
        if self.seen == len(changes):
            return
        for ordinal in set(changes[self.seen :]):
            if ordinal not in self.possible:
                continue
            old = self.moments.pop(ordinal, None)
            if old is not None:
                ordered = self.ordered
                del ordered[bisect_left(ordered, (old, ordinal))]
            moment = ready_at(self.request, capacity, ordinal)
            if moment is not None:
                self.moments[ordinal] = moment
                insort(self.ordered, (moment, ordinal))
        self.seen = len(changes)

    def shadow(self, want: int) -> tuple[Moment, list[int]] | None:
        """The `want`-th earliest moment and every node ready by then; None when fewer nodes ever get ready."""
        ordered = self.ordered
        if len(ordered) < want:
            return None
        last = ordered[want - 1][0]
        ready = []
        for moment, ordinal in ordered:
            if moment > last:
                break
            ready.append(ordinal)
        return last, ready


def _changes(capacity: FreeCapacity) -> list[int]:
    if capacity.changes is None:
        raise ValueError("node readiness is memoised only on a capacity kept across cycles (FreeCapacity(kept=True))")
    return capacity.changes


def ready_at(request: JobRequest, capacity: FreeCapacity, ordinal: int) -> Moment | None:
    """The moment a node could hold one gang member of `request`: `NOW`, a running job's, or None for never.

    Sums exactly as `backfill.reserve` does (the freed CPUs and memory apart, then added to what is free)."""
    gpus, cpus, memory = request.gpus_per_node, request.cpus_per_node, request.memory_bytes_per_node
    free_cpus, free_memory = capacity.cpus[ordinal], capacity.memory[ordinal]
    cards = len(capacity.fitting(ordinal, request.cards))
    if cards >= gpus and free_cpus >= cpus and free_memory >= memory:
        return NOW
    name, usable = capacity.nodes[ordinal].name, capacity.usable[ordinal]
    kinds = capacity.card_kinds[ordinal] if capacity.kind_of[ordinal] is None else None
    accepted = capacity.kinds_for(request.cards)
    running = capacity.running
    extra_cards, extra_cpus, extra_memory = 0, 0.0, 0
    for moment in capacity.ending_on[ordinal]:
        job = running[moment[1]]
        for assignment in job.placement.assignments:
            if assignment.node != name:
                continue
            if kinds is None:
                extra_cards += len(usable.intersection(assignment.cards))
            else:
                extra_cards += sum(1 for i in assignment.cards if i in usable and kinds[i] in accepted)
            extra_cpus += job.request.cpus_per_node
            extra_memory += job.request.memory_bytes_per_node
            if free_cpus + extra_cpus >= cpus and free_memory + extra_memory >= memory and cards + extra_cards >= gpus:
                return moment
    return None
