"""What is free right now, indexed so that a placement finds fitting nodes without scanning the cluster.

Homogeneous nodes (all cards of one kind, the common case) are grouped into equivalence classes by
(card kind, number of free cards): a request for G cards of acceptable kinds looks only at the buckets
with at least G free cards of those kinds, least scarce kind and tightest fit first. Nodes mixing kinds
are rare and are scanned. Unhealthy cards and cards in MIG mode are never free (whole-card jobs only).

It also counts the cards held per (card filter, kind), which tells best fit how much of a kind jobs that could
use little else are holding (see `contention`). A capacity `kept` across cycles (the simulator's) also logs which
nodes changed and keeps each node's running jobs in end order, for backfill's memo (see `readiness`).
"""

from __future__ import annotations

from bisect import bisect_left, insort
from collections.abc import Iterable, Sequence

from atelier.scheduling.inventory import CardKind, Node
from atelier.scheduling.jobs import RunningJob
from atelier.scheduling.readiness import Readiness
from atelier.scheduling.request import CardFilter


class FreeCapacity:
    """The free cards, CPUs and host memory of every schedulable node, with the bucket index.

    Nodes are addressed by ordinal (position in `nodes`); `ordinal` maps names to them. `kept`: the caller keeps
    this capacity across cycles (the simulator), so backfill memoises each node's readiness (see `readiness`);
    it would not pay off within one cycle.
    """

    def __init__(self, nodes: Sequence[Node], *, kept: bool = False) -> None:
        self.nodes: list[Node] = [node for node in nodes if node.schedulable]
        self.ordinal: dict[str, int] = {node.name: i for i, node in enumerate(self.nodes)}
        self.usable: list[frozenset[int]] = [
            frozenset(card.index for card in node.cards if card.healthy and not card.mig_enabled) for node in self.nodes
        ]
        self.free: list[set[int]] = [set(usable) for usable in self.usable]
        self.cpus: list[float] = [node.cpus for node in self.nodes]
        self.memory: list[int] = [node.memory_bytes for node in self.nodes]
        self.kind_of: list[CardKind | None] = [node.kind for node in self.nodes]
        self.card_kinds: list[dict[int, CardKind]] = [node.card_kinds for node in self.nodes]
        self.buckets: dict[CardKind, list[dict[int, None]]] = {}
        self.mixed: dict[int, None] = {}
        self.free_by_kind: dict[CardKind, int] = {}
        self.total_free = 0
        self.ending: list[tuple[float, str]] = []
        """(when its cards come free at the latest, job id) of every running job taken with `take_job`, sorted."""
        self.running: dict[str, RunningJob] = {}
        self.held: dict[CardFilter, dict[CardKind, int]] = {}
        """Cards held per card filter of the jobs holding them, and kind."""
        self._kinds_for: dict[CardFilter, tuple[CardKind, ...]] = {}
        self.could_hold: dict[int, frozenset[int]] = {}
        """Gang shape -> the nodes with enough usable cards for one gang member (backfill's memo)."""
        self.changes: list[int] | None = [] if kept else None
        """Kept capacity: the ordinal of the node of every take and release, in order."""
        self.ending_on: list[list[tuple[float, str]]] = [[] for _ in self.nodes] if kept else []
        """Kept capacity: per node, (when its cards come free at the latest, job id) of the running jobs on it."""
        self.readiness: dict[int, Readiness] = {}
        """Kept capacity: request shape -> when each node could hold one gang member (backfill's memo)."""
        for i, node in enumerate(self.nodes):
            kind = self.kind_of[i]
            if kind is None:
                if node.cards:
                    self.mixed[i] = None
            else:
                buckets = self.buckets.setdefault(kind, [])
                while len(buckets) <= len(node.cards):
                    buckets.append({})
                buckets[len(self.free[i])][i] = None
            if kind is not None:
                self.free_by_kind[kind] = self.free_by_kind.get(kind, 0) + len(self.free[i])
            else:
                for index in self.free[i]:
                    card_kind = self.card_kinds[i][index]
                    self.free_by_kind[card_kind] = self.free_by_kind.get(card_kind, 0) + 1
            self.total_free += len(self.free[i])
        self.at_least: dict[CardKind, list[int]] = {
            kind: [sum(len(b) for b in buckets[count:]) for count in range(len(buckets))]
            for kind, buckets in self.buckets.items()
        }
        """Per kind, how many of its homogeneous nodes have at least 0, 1, 2, ... free cards."""
        self.nodes_of_kind: dict[CardKind, list[int]] = {}
        for i, kind in enumerate(self.kind_of):
            if kind is not None:
                self.nodes_of_kind.setdefault(kind, []).append(i)
        kinds = {kind for kind in self.kind_of if kind is not None}
        kinds.update(kind for i in self.mixed for kind in self.card_kinds[i].values())
        self.kinds: tuple[CardKind, ...] = tuple(sorted(kinds, key=lambda k: k.scarcity))

    @classmethod
    def build(cls, nodes: Sequence[Node], running: Iterable[RunningJob]) -> FreeCapacity:
        """The capacity `running` jobs leave free on `nodes` (assignments to unknown or drained nodes are ignored)."""
        capacity = cls(nodes)
        for job in running:
            capacity.take_job(job)
        return capacity

    def kinds_for(self, cards: CardFilter) -> tuple[CardKind, ...]:
        """Card kinds of this cluster that meet a filter, least scarce first (memoised)."""
        kinds = self._kinds_for.get(cards)
        if kinds is None:
            kinds = self._kinds_for[cards] = tuple(k for k in self.kinds if cards.accepts(k))
        return kinds

    def fitting(self, ordinal: int, cards: CardFilter) -> list[int]:
        """Free card indices of a node that meet a filter."""
        kind = self.kind_of[ordinal]
        if kind is not None:
            return sorted(self.free[ordinal]) if cards.accepts(kind) else []
        kinds = self.card_kinds[ordinal]
        return sorted(i for i in self.free[ordinal] if cards.accepts(kinds[i]))

    def take_job(self, job: RunningJob) -> None:
        """Mark a running job's cards, CPUs and memory as used."""
        request = job.request
        if job.job_id not in self.running:
            self.running[job.job_id] = job
            key = (_frees_at(job), job.job_id)
            insort(self.ending, key)
            if self.changes is not None:
                for held_on in self._ordinals(job):
                    insort(self.ending_on[held_on], key)
        for assignment in job.placement.assignments:
            ordinal = self.ordinal.get(assignment.node)
            if ordinal is not None:
                self.take(
                    ordinal, assignment.cards, request.cpus_per_node, request.memory_bytes_per_node, request.cards
                )

    def release_job(self, job: RunningJob) -> None:
        """Give a finished job's cards, CPUs and memory back."""
        request = job.request
        held = self.running.pop(job.job_id, None)
        if held is not None:
            key = (_frees_at(held), held.job_id)
            _discard(self.ending, key)
            if self.changes is not None:
                for held_on in self._ordinals(held):
                    _discard(self.ending_on[held_on], key)
        for assignment in job.placement.assignments:
            ordinal = self.ordinal.get(assignment.node)
            if ordinal is not None:
                self.release(
                    ordinal, assignment.cards, request.cpus_per_node, request.memory_bytes_per_node, request.cards
                )

    def take(
        self, ordinal: int, cards: Iterable[int], cpus: float, memory: int, cards_filter: CardFilter | None = None
    ) -> None:
        """Use cards (those not free are ignored), CPUs and memory of a node, for a job with `cards_filter`."""
        free = self.free[ordinal]
        before = len(free)
        kind = self.kind_of[ordinal]
        if kind is not None:
            free.difference_update(cards)
            self._count(kind, len(free) - before, cards_filter)
        else:
            kinds = self.card_kinds[ordinal]
            for index in cards:
                if index in free:
                    free.discard(index)
                    self._count(kinds[index], -1, cards_filter)
        self._moved(ordinal, before, len(free))
        self.cpus[ordinal] -= cpus
        self.memory[ordinal] -= memory
        if self.changes is not None:
            self.changes.append(ordinal)

    def release(
        self, ordinal: int, cards: Iterable[int], cpus: float, memory: int, cards_filter: CardFilter | None = None
    ) -> None:
        """Free cards (only usable ones come back), CPUs and memory of a node, of a job with `cards_filter`."""
        free = self.free[ordinal]
        before = len(free)
        kind = self.kind_of[ordinal]
        if kind is not None:
            free.update(self.usable[ordinal].intersection(cards))
            self._count(kind, len(free) - before, cards_filter)
        else:
            kinds, usable = self.card_kinds[ordinal], self.usable[ordinal]
            for index in cards:
                if index in usable and index not in free:
                    free.add(index)
                    self._count(kinds[index], 1, cards_filter)
        self._moved(ordinal, before, len(free))
        self.cpus[ordinal] += cpus
        self.memory[ordinal] += memory
        if self.changes is not None:
            self.changes.append(ordinal)

    def _ordinals(self, job: RunningJob) -> set[int]:
        """The ordinals of the known nodes a job holds cards on."""
        found = (self.ordinal.get(a.node) for a in job.placement.assignments)
        return {ordinal for ordinal in found if ordinal is not None}

    def _count(self, kind: CardKind, freed: int, cards_filter: CardFilter | None) -> None:
        """`freed` cards of a kind came free (negative: were taken) from or for a job with `cards_filter`."""
        if not freed:
            return
        self.free_by_kind[kind] += freed
        if cards_filter is not None:
            held = self.held.setdefault(cards_filter, {})
            held[kind] = max(held.get(kind, 0) - freed, 0)

    def _moved(self, ordinal: int, before: int, after: int) -> None:
        if before == after:
            return
        self.total_free += after - before
        kind = self.kind_of[ordinal]
        if kind is not None:
            buckets = self.buckets[kind]
            del buckets[before][ordinal]
            buckets[after][ordinal] = None
            at_least = self.at_least[kind]
            if after > before:
                for count in range(before + 1, after + 1):
                    at_least[count] += 1
            else:
                for count in range(after + 1, before + 1):
                    at_least[count] -= 1


def _discard(ordered: list[tuple[float, str]], key: tuple[float, str]) -> None:
    at = bisect_left(ordered, key)
    if at < len(ordered) and ordered[at] == key:
        del ordered[at]


def _frees_at(job: RunningJob) -> float:
    """When a running job's cards come free at the latest: now for one already stopping."""
    return float("-inf") if job.stopping else job.expected_end
