"""Placement strategies: which nodes and cards a request gets out of the free capacity, or None.

`BestFit` is Atelier's heterogeneity-aware placement; `FirstFit` is the naive baseline the simulator compares
against. Both place gangs all or nothing and never change the capacity themselves (the cycle takes the cards).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Protocol

from atelier.scheduling.capacity import FreeCapacity
from atelier.scheduling.contention import Contention
from atelier.scheduling.inventory import CardKind
from atelier.scheduling.jobs import NodeAssignment, Placement
from atelier.scheduling.request import JobRequest
from atelier.scheduling.topology import choose_cards

Choice = list[tuple[int, tuple[int, ...]]]
"""(node ordinal, card indices) per node of a gang, rank order."""


class PlacementStrategy(Protocol):
    """Finds nodes and cards for a request in the free capacity."""

    name: str

    def place(
        self,
        request: JobRequest,
        capacity: FreeCapacity,
        exclude: Collection[int] = (),
        contention: Contention | None = None,
    ) -> Choice | None:
        """The gang's nodes and cards, avoiding the `exclude`d node ordinals; None when it does not fit now.
        `contention`: the demand on each card kind (strategies that weigh it; none: no other demand known)."""
        ...


def to_placement(choice: Choice, capacity: FreeCapacity) -> Placement:
    """The named placement of a choice."""
    return Placement(tuple(NodeAssignment(capacity.nodes[o].name, cards) for o, cards in choice))


def could_fit_in_total(request: JobRequest, capacity: FreeCapacity) -> bool:
    """Quick rejection: enough free cards of acceptable kinds in the whole cluster."""
    free_by_kind = capacity.free_by_kind
    need = request.gpus
    have = 0
    for kind in capacity.kinds_for(request.cards):
        have += free_by_kind.get(kind, 0)
        if have >= need:
            return True
    return False


class BestFit:
    """Heterogeneity-aware, scarcity-aware best fit.

    The card kinds a request accepts are tried in the order `contention` gives (kinds that jobs with fewer
    options need go last, otherwise the least capable first: fewest native precisions, then least memory, then
    oldest capability). A single-node request takes the tightest node (fewest free cards, so whole nodes stay
    whole) that does not break up a node a pending wider job needs; a gang takes nodes of one kind when it can.
    On each node it takes the best-connected cards.
    """

    name = "best-fit"

    def place(
        self,
        request: JobRequest,
        capacity: FreeCapacity,
        exclude: Collection[int] = (),
        contention: Contention | None = None,
    ) -> Choice | None:
        """See `PlacementStrategy.place`."""
        if not could_fit_in_total(request, capacity):
            return None
        if contention is None:
            kinds = capacity.kinds_for(request.cards)
        else:
            kinds = contention.order(request.cards, request.gpus)
        if request.nodes == 1:
            single = self._single(request, capacity, exclude, kinds, contention)
            ordinals = None if single is None else [single]
        else:
            ordinals = self._gang(request, capacity, exclude, kinds)
        if ordinals is None:
            return None
        choice: Choice = []
        for ordinal in ordinals:
            fitting = capacity.fitting(ordinal, request.cards)
            if capacity.kind_of[ordinal] is None:
                fitting = _cheapest(capacity, ordinal, fitting, request.gpus_per_node)
            choice.append((ordinal, choose_cards(capacity.nodes[ordinal], fitting, request.gpus_per_node)))
        return choice

    @staticmethod
    def _single(
        request: JobRequest,
        capacity: FreeCapacity,
        exclude: Collection[int],
        kinds: Sequence[CardKind],
        contention: Contention | None,
    ) -> int | None:
        """The node for a one-node request: the first kind's tightest node that breaks no wide node, else the
        first node that fits at all."""
        gpus, cpus, memory = request.gpus_per_node, request.cpus_per_node, request.memory_bytes_per_node
        free_cpus, free_memory = capacity.cpus, capacity.memory
        fallback: int | None = None
        for kind in kinds:
            buckets = capacity.buckets.get(kind)
            if not buckets:
                continue
            for count in range(gpus, len(buckets)):
                for ordinal in buckets[count]:
                    if ordinal in exclude or free_cpus[ordinal] < cpus or free_memory[ordinal] < memory:
                        continue
                    if contention is None or not contention.breaks_wide_node(request.cards, kind, count, gpus):
                        return ordinal
                    if fallback is None:
                        fallback = ordinal
                    break  # the other nodes of this bucket would break up the same way
        mixed = BestFit._mixed(request, capacity, exclude)
        return fallback if fallback is not None else mixed[0] if mixed else None

    @staticmethod
    def _gang(
        request: JobRequest, capacity: FreeCapacity, exclude: Collection[int], kinds: Sequence[CardKind]
    ) -> list[int] | None:
        want, gpus = request.nodes, request.gpus_per_node
        cpus, memory = request.cpus_per_node, request.memory_bytes_per_node
        free_cpus, free_memory = capacity.cpus, capacity.memory
        pool: list[int] = []
        for kind in kinds:
            buckets = capacity.buckets.get(kind)
            if not buckets:
                continue
            same_kind: list[int] = []
            for count in range(gpus, len(buckets)):
                for ordinal in buckets[count]:
                    if ordinal in exclude or free_cpus[ordinal] < cpus or free_memory[ordinal] < memory:
                        continue
                    same_kind.append(ordinal)
                    if len(same_kind) == want:
                        return same_kind
            pool.extend(same_kind)
        pool.extend(BestFit._mixed(request, capacity, exclude))
        return pool[:want] if len(pool) >= want else None

    @staticmethod
    def _mixed(request: JobRequest, capacity: FreeCapacity, exclude: Collection[int]) -> list[int]:
        """Mixed-kind nodes that fit, tightest first."""
        fits = []
        for ordinal in capacity.mixed:
            if ordinal in exclude or capacity.cpus[ordinal] < request.cpus_per_node:
                continue
            if capacity.memory[ordinal] < request.memory_bytes_per_node:
                continue
            count = len(capacity.fitting(ordinal, request.cards))
            if count >= request.gpus_per_node:
                fits.append((count, ordinal))
        return [ordinal for _, ordinal in sorted(fits)]


def _cheapest(capacity: FreeCapacity, ordinal: int, fitting: list[int], count: int) -> list[int]:
    """On a mixed node, only cards of the least scarce kinds that can make up `count`."""
    kinds = capacity.card_kinds[ordinal]
    ranked = sorted(fitting, key=lambda i: kinds[i].scarcity)
    limit = kinds[ranked[count - 1]].scarcity
    return [i for i in ranked if kinds[i].scarcity <= limit]


class FirstFit:
    """Baseline: the first nodes in inventory order with enough fitting free cards; the lowest card indices.

    Knows nothing of card scarcity, fragmentation or topology.
    """

    name = "first-fit"

    def place(
        self,
        request: JobRequest,
        capacity: FreeCapacity,
        exclude: Collection[int] = (),
        contention: Contention | None = None,
    ) -> Choice | None:
        """See `PlacementStrategy.place` (`contention` is ignored)."""
        if not could_fit_in_total(request, capacity):
            return None
        gpus = request.gpus_per_node
        kinds = capacity.kinds_for(request.cards)
        accepted = set(kinds)
        choice: Choice = []
        for ordinal in _in_inventory_order(capacity, kinds, gpus):
            free = capacity.free[ordinal]
            if len(free) < gpus or ordinal in exclude:
                continue
            kind = capacity.kind_of[ordinal]
            if kind is not None and kind not in accepted:
                continue
            if (
                capacity.cpus[ordinal] < request.cpus_per_node
                or capacity.memory[ordinal] < request.memory_bytes_per_node
            ):
                continue
            fitting = capacity.fitting(ordinal, request.cards)
            if len(fitting) >= gpus:
                choice.append((ordinal, tuple(fitting[:gpus])))
                if len(choice) == request.nodes:
                    return choice
        return None


def _in_inventory_order(capacity: FreeCapacity, kinds: Sequence[CardKind], gpus: int) -> Sequence[int]:
    """The ordinals of the nodes that may have `gpus` free cards of `kinds`, in inventory order: from the bucket
    index when it names few nodes (a busy cluster), else all of them (the caller checks each node anyway)."""
    few = len(capacity.mixed)
    for kind in kinds:
        at_least = capacity.at_least.get(kind)
        if at_least is not None and gpus < len(at_least):
            few += at_least[gpus]
    if few > 64:
        return range(len(capacity.free))
    found = list(capacity.mixed)
    for kind in kinds:
        buckets = capacity.buckets.get(kind, [])
        for count in range(gpus, len(buckets)):
            found.extend(buckets[count])
    found.sort()
    return found
