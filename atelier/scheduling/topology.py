"""Choosing which free cards of a node a job gets: the best-connected set that leaves the rest best connected."""

from __future__ import annotations

from collections.abc import Collection
from itertools import combinations

from atelier.scheduling.inventory import Node, Topology

# Beyond this many candidate sets the choice is made greedily (an 8-card node never gets there: C(8, 4) = 70).
_MAX_COMBINATIONS = 256

_CHOSEN: dict[tuple[int, tuple[int, ...], int], tuple[int, ...]] = {}


def choose_cards(node: Node, free: Collection[int], count: int) -> tuple[int, ...]:
    """`count` of the `free` card indices: the set whose worst and total links are best (NVLink islands, same
    switch), ties broken by how well the cards left over stay connected, then by lowest indices."""
    candidates = tuple(sorted(free))
    if count >= len(candidates):
        return candidates
    if count == 0:
        return ()
    positions = node.position
    # Topologies are interned (see `Node`), so their identity stands for their value.
    slots_free = tuple(positions[i] for i in candidates)
    key = (id(node.topology), slots_free, count)
    chosen = _CHOSEN.get(key)
    if chosen is None:
        slots = _choose_slots(node.topology, slots_free, count)
        by_position = {positions[i]: i for i in candidates}
        chosen = tuple(sorted(by_position[p] for p in slots))
        if len(_CHOSEN) > 100_000:
            _CHOSEN.clear()
        _CHOSEN[key] = chosen
    return chosen


def _choose_slots(topology: Topology, slots: tuple[int, ...], count: int) -> tuple[int, ...]:
    total = _combinations_count(len(slots), count)
    if total > _MAX_COMBINATIONS:
        return _greedy(topology, slots, count)
    best: tuple[int, ...] = ()
    best_score: tuple[int, int, int, int] | None = None
    for subset in combinations(slots, count):
        rest = tuple(s for s in slots if s not in subset)
        score = (*_spread(topology, subset), *_spread(topology, rest))
        if best_score is None or score < best_score:
            best, best_score = subset, score
    return best


def _spread(topology: Topology, slots: tuple[int, ...]) -> tuple[int, int]:
    """(worst link, sum of links) among a set of cards; lower is better connected."""
    worst = total = 0
    for i, a in enumerate(slots):
        row = topology[a]
        for b in slots[i + 1 :]:
            link = row[b]
            total += link
            worst = max(worst, link)
    return worst, total


def _greedy(topology: Topology, slots: tuple[int, ...], count: int) -> tuple[int, ...]:
    """Grow a set from each seed by adding the card closest to it; keep the best-connected result."""
    best: tuple[int, ...] = ()
    best_score: tuple[int, int] | None = None
    for seed in slots:
        chosen = [seed]
        while len(chosen) < count:
            nearest = min((s for s in slots if s not in chosen), key=lambda s: (sum(topology[s][c] for c in chosen), s))
            chosen.append(nearest)
        score = _spread(topology, tuple(chosen))
        if best_score is None or score < best_score:
            best, best_score = tuple(sorted(chosen)), score
    return best


def _combinations_count(n: int, k: int) -> int:
    result = 1
    for i in range(k):
        result = result * (n - i) // (i + 1)
    return result
