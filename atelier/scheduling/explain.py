"""Why a job starts where it does, in one line a user can read.

`2 nodes x 1 GPU with bf16: A100-80 on ampere[0], L4 on ada[2] (least capable there; L40S kept free); best-fit
tried least capable first (fewest native precisions, then least memory): A100-80, L4, L40S; no one kind had 2
free nodes; backfilled: no`.

The facts are gathered when a job starts (a few set operations on the nodes it got) and put into words only
when someone reads them, so a cycle that starts many jobs, or the simulator, pays little for them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from atelier.scheduling.capacity import FreeCapacity
from atelier.scheduling.inventory import CardKind
from atelier.scheduling.request import JobRequest

_LEAST_CAPABLE = "least capable first (fewest native precisions, then least memory)"


@dataclass(frozen=True)
class NodeReason:
    """What a job got on one node: its cards, their kinds, and the other fitting kinds it left free there."""

    node: str
    cards: tuple[int, ...]
    kinds: tuple[CardKind, ...]
    kept: tuple[CardKind, ...] = ()


@dataclass(frozen=True)
class Reasons:
    """The facts behind one start; `describe()` puts them into words."""

    request: JobRequest
    strategy: str
    tried: tuple[CardKind, ...]
    """The card kinds the strategy tried, in its order."""
    reordered: bool
    """Whether the order puts kinds that jobs with fewer options need after less capable ones."""
    nodes: tuple[NodeReason, ...]
    backfilled_before: str = ""

    def describe(self) -> str:
        """The whole explanation, one line."""
        chosen = {kind for node in self.nodes for kind in node.kinds}
        parts = [f"{self.request.describe()}: {', '.join(_node_text(node) for node in self.nodes)}"]
        if self.strategy == "first-fit":
            parts.append("first-fit took the first nodes in inventory order that fit")
        elif len(self.tried) == 1:
            parts.append(f"only {self.tried[0].model} fits")
        else:
            order = "kinds that jobs with fewer options need last, then " + _LEAST_CAPABLE
            how = order if self.reordered else _LEAST_CAPABLE
            parts.append(f"{self.strategy} tried {how}: {', '.join(kind.model for kind in self.tried)}")
            last = max(self.tried.index(kind) for kind in chosen if kind in self.tried) if chosen else -1
            full = [kind.model for kind in self.tried[:last] if kind not in chosen]
            if full:
                parts.append(f"no room on {', '.join(full)}")
        if self.request.nodes > 1 and len(chosen) > 1:
            parts.append(f"no one kind had {self.request.nodes} free nodes")
        if self.backfilled_before:
            parts.append(f"backfilled: yes, ahead of {self.backfilled_before} (ends before its reserved start)")
        else:
            parts.append("backfilled: no")
        return "; ".join(parts)


def gather(
    request: JobRequest,
    choice: Sequence[tuple[int, tuple[int, ...]]],
    capacity: FreeCapacity,
    tried: tuple[CardKind, ...],
    strategy: str,
    backfilled_before: str = "",
) -> Reasons:
    """The facts of a start, taken after the job's cards were taken from `capacity` (what is still free of a
    fitting kind on its nodes is what it kept free)."""
    nodes = []
    for ordinal, cards in choice:
        kind = capacity.kind_of[ordinal]
        name = capacity.nodes[ordinal].name
        if kind is not None:
            nodes.append(NodeReason(name, cards, (kind,)))
            continue
        kinds = capacity.card_kinds[ordinal]
        taken = frozenset(kinds[c] for c in cards)
        left = {kinds[i] for i in capacity.fitting(ordinal, request.cards)} - taken
        nodes.append(
            NodeReason(
                name,
                cards,
                tuple(sorted(taken, key=lambda k: k.scarcity)),
                tuple(sorted(left, key=lambda k: k.scarcity)),
            )
        )
    default = capacity.kinds_for(request.cards)
    return Reasons(request, strategy, tried, tried != default, tuple(nodes), backfilled_before)


def _node_text(node: NodeReason) -> str:
    text = f"{'/'.join(kind.model for kind in node.kinds)} on {node.node}[{','.join(map(str, node.cards))}]"
    if node.kept:
        kept = ", ".join(kind.model for kind in node.kept)
        if max(k.scarcity for k in node.kinds) <= min(k.scarcity for k in node.kept):
            text += f" (least capable there; {kept} kept free)"
        else:
            text += f" (too few {kept} free there)"
    return text
