"""Rejecting at submission what no node could ever hold, with a reason a user can act on.

"Ever" means with the cluster empty: current load is ignored, and so are health and drain state (cards get
repaired, nodes come back), but a card kind that exists nowhere will never appear by waiting.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from atelier.errors import FailedPrecondition
from atelier.scheduling.catalogue import GIB
from atelier.scheduling.inventory import Node
from atelier.scheduling.request import JobRequest, describe_need


def fitting_cards(node: Node, request: JobRequest) -> int:
    """How many of a node's cards meet the request's per-card constraints (ignoring load and health)."""
    if node.cpus < request.cpus_per_node or node.memory_bytes < request.memory_bytes_per_node:
        return 0
    accepts = request.cards.accepts
    kind = node.kind
    if kind is not None:
        return len(node.cards) if accepts(kind) else 0
    return sum(1 for card in node.cards if accepts(card.kind))


def infeasibility(request: JobRequest, nodes: Sequence[Node]) -> str:
    """Why no set of nodes could ever hold the request, or empty when some could.

    E.g. `"no node has 4 GPUs with >= 80 GiB and bf16; largest: 8 x V100M32 (32 GiB, without bf16)"`.
    """
    counts = [fitting_cards(node, request) for node in nodes]
    able = sum(1 for count in counts if count >= request.gpus_per_node)
    if able >= request.nodes:
        return ""
    need = _need(request)
    if not nodes:
        return f"the cluster has no nodes to hold {need}"
    if able == 0:
        head = f"no node has {need}"
    else:
        plural = "nodes have" if able > 1 else "node has"
        head = f"the job needs {request.nodes} nodes with {need}; only {able} {plural} that"
    return f"{head}; largest: {_largest(request, nodes, counts)}"


def check_feasible(request: JobRequest, nodes: Sequence[Node]) -> None:
    """FAILED_PRECONDITION with the reason when no set of nodes could ever hold the request."""
    reason = infeasibility(request, nodes)
    if reason:
        raise FailedPrecondition(
            reason, metadata={"nodes": str(request.nodes), "gpus_per_node": str(request.gpus_per_node)}
        )


def _need(request: JobRequest) -> str:
    return describe_need(request.gpus_per_node, request.cards, request.cpus_per_node, request.memory_bytes_per_node)


def _largest(request: JobRequest, nodes: Sequence[Node], counts: Sequence[int]) -> str:
    """The node closest to the request (most fitting cards, then most cards, then most memory per card),
    with what it lacks."""
    best = max(
        range(len(nodes)),
        key=lambda i: (counts[i], len(nodes[i].cards), max((c.memory_total_bytes for c in nodes[i].cards), default=0)),
    )
    node = nodes[best]
    if not node.cards:
        return f"nodes/{node.name} has no GPUs"
    where = f" on nodes/{node.name}"
    models = Counter(card.model for card in node.cards)
    text = ", ".join(f"{count} x {model}" for model, count in models.most_common())
    lacks = list(dict.fromkeys(reason for card in node.cards for reason in request.cards.rejections(card.kind)))
    if node.cpus < request.cpus_per_node:
        lacks.append(f"only {node.cpus:g} CPUs")
    if node.memory_bytes < request.memory_bytes_per_node:
        lacks.append(f"only {node.memory_bytes / GIB:g} GiB host memory")
    if counts[best] and not lacks:
        lacks.append(f"only {counts[best]} fitting")
    return (f"{text} ({', '.join(lacks)})" if lacks else text) + where
