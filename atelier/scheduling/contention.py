"""Scarcity-aware best fit: how much of each card kind jobs with fewer options hold or wait for.

"Least capable first" alone hands a scarce kind (say P100) to a job that could run anywhere, and the jobs that
accept only that kind wait. So best fit weighs each kind a request accepts by the demand of *constrained* jobs:
those whose acceptable kinds are a strict subset of the request's (a P100-only job is constrained next to a
job that takes any card; an 80 GiB bf16 job next to a 24 GiB bf16 one). Per kind k:

- spoken for: the GPUs constrained pending jobs want of k (spread evenly over the kinds each accepts), plus the
  request's own, exceed k's free cards: taking one would make a constrained job wait now;
- claim: those pending GPUs plus the GPUs of k constrained running jobs hold, per free card of k. Held cards
  count because the jobs holding a kind now are the best guess of who will want it next.

A request takes its kinds ordered by (spoken for, claim, least capable), so the preference for the least capable
card stands wherever no constrained job claims it. On one node it also avoids breaking up a node that a pending
job of more GPUs per node could use, while no more such nodes are free than those jobs need.

The demand is taken at the start of a cycle; the free cards are live. Within a cycle a started job's GPUs move
from pending to held, so the claims stay right; only "spoken for" may err, towards caution.
"""

from __future__ import annotations

from collections.abc import Mapping

from atelier.scheduling.capacity import FreeCapacity
from atelier.scheduling.inventory import CardKind
from atelier.scheduling.request import CardFilter

Claims = dict[CardKind, tuple[float, float]]
"""Kind -> (constrained pending GPUs, constrained held + pending GPUs)."""


class Contention:
    """The demand on each card kind, as one cycle's best fit weighs it."""

    def __init__(
        self,
        capacity: FreeCapacity,
        pending: Mapping[CardFilter, int],
        wide: Mapping[tuple[CardFilter, int], int],
    ) -> None:
        self.capacity = capacity
        self.pending = pending
        self.wide = wide
        self._sets: dict[CardFilter, frozenset[CardKind]] = {}
        self._claims: dict[frozenset[CardKind], Claims] = {}
        self._wide_for: dict[frozenset[CardKind], list[tuple[frozenset[CardKind], int, int]]] = {}

    def kinds(self, cards: CardFilter) -> frozenset[CardKind]:
        """The cluster's kinds a filter accepts, as a set (memoised)."""
        kinds = self._sets.get(cards)
        if kinds is None:
            kinds = self._sets[cards] = frozenset(self.capacity.kinds_for(cards))
        return kinds

    def claims(self, accepted: frozenset[CardKind]) -> Claims:
        """Per accepted kind with any constrained demand: (pending GPUs, held + pending GPUs) of the jobs whose
        kinds are a strict subset of `accepted`."""
        claims = self._claims.get(accepted)
        if claims is not None:
            return claims
        found: dict[CardKind, list[float]] = {}
        for cards, gpus in self.pending.items():
            kinds = self.kinds(cards)
            if kinds and kinds < accepted:
                each = gpus / len(kinds)
                for kind in kinds:
                    entry = found.setdefault(kind, [0.0, 0.0])
                    entry[0] += each
                    entry[1] += each
        for cards, held in self.capacity.held.items():
            kinds = self.kinds(cards)
            if kinds < accepted:
                for kind, count in held.items():
                    if count:
                        found.setdefault(kind, [0.0, 0.0])[1] += count
        claims = self._claims[accepted] = {kind: (p, c) for kind, (p, c) in found.items()}
        return claims

    def order(self, cards: CardFilter, gpus: int) -> tuple[CardKind, ...]:
        """The kinds a request of `gpus` GPUs with this filter should try, best first."""
        ordered = self.capacity.kinds_for(cards)
        claims = self.claims(self.kinds(cards))
        if not claims:
            return ordered  # least capable first
        free = self.capacity.free_by_kind

        def key(kind: CardKind) -> tuple[bool, float]:
            pending, claim = claims.get(kind, (0.0, 0.0))
            have = free.get(kind, 0)
            return pending + gpus > have, claim / have if have else float("inf")

        return tuple(sorted(ordered, key=key))  # stable: least capable first among equals

    def breaks_wide_node(self, cards: CardFilter, kind: CardKind, free: int, gpus: int) -> bool:
        """Whether taking `gpus` of a node's `free` cards of `kind` leaves too few nodes for pending jobs of more
        GPUs per node that could use it (those jobs want at least as many such nodes as are free)."""
        for kinds, per_node, nodes in self._wide(self.kinds(cards)):
            if (
                gpus < per_node <= free < per_node + gpus
                and kind in kinds
                and self._nodes_with(kinds, per_node) <= nodes
            ):
                return True
        return False

    def _wide(self, accepted: frozenset[CardKind]) -> list[tuple[frozenset[CardKind], int, int]]:
        entries = self._wide_for.get(accepted)
        if entries is None:
            entries = []
            for (cards, per_node), nodes in self.wide.items():
                kinds = self.kinds(cards)
                if kinds & accepted:
                    entries.append((kinds, per_node, nodes))
            self._wide_for[accepted] = entries
        return entries

    def _nodes_with(self, kinds: frozenset[CardKind], per_node: int) -> int:
        """Homogeneous nodes of these kinds with at least `per_node` free cards."""
        total = 0
        at_least = self.capacity.at_least
        for kind in kinds:
            counts = at_least.get(kind)
            if counts is not None and per_node < len(counts):
                total += counts[per_node]
        return total
