"""The cluster as the database knows it, and what a job's request means for its cards."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping
from typing import Any

from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from atelier import scheduling as core
from atelier.errors import FailedPrecondition
from atelier.scheduler.v1 import resources_pb2 as pb
from services.scheduler.spec import Shape
from services.scheduler.tables import NodeRow

GIB = 1024**3
Feasibility = Callable[[pb.Job, Shape], None]
_PRECISIONS = {p: pb.Precision.Value(f"PRECISION_{p.name.upper()}") for p in core.Precision}


def capability(text: str) -> tuple[int, int]:
    major, _, minor = text.partition(".")
    return (int(major), int(minor)) if major.isdigit() and minor.isdigit() else (0, 0)


def precisions_of(compute_capability: str) -> list[int]:
    """Precisions a card computes natively, from its compute capability."""
    return sorted(_PRECISIONS[p] for p in core.precisions_for(capability(compute_capability)))


def precision_name(value: int) -> str:
    return pb.Precision.Name(value).removeprefix("PRECISION_").lower()  # type: ignore[arg-type]


def card_fits(card: dict[str, Any], resources: pb.Resources) -> bool:
    """Whether one card (as stored) meets the request's memory, precision and model constraints."""
    if not card.get("health", {}).get("healthy", False):
        return False
    if int(card.get("memory_total_bytes", 0)) < resources.min_gpu_memory_bytes:
        return False
    if resources.precision and resources.precision not in precisions_of(card.get("compute_capability", "")):
        return False
    model = card.get("model", "")
    if resources.allowed_card_models and model not in resources.allowed_card_models:
        return False
    return model not in resources.forbidden_card_models


def describe_need(shape: Shape, resources: pb.Resources) -> str:
    parts = [f"{shape.gpus_per_node} GPUs"]
    if resources.min_gpu_memory_bytes:
        parts.append(f"with >= {resources.min_gpu_memory_bytes / GIB:g} GiB")
    if resources.precision:
        parts.append(("and " if len(parts) > 1 else "with ") + precision_name(resources.precision))
    if resources.allowed_card_models:
        parts.append(f"of models {'/'.join(resources.allowed_card_models)}")
    return " ".join(parts)


def describe_largest(nodes: list[NodeRow], resources: pb.Resources) -> str:
    """The biggest node by card count, e.g. `8 x V100M32 (32 GiB) without bf16`."""
    if not nodes:
        return "the cluster has no nodes yet (start an agent: atelier agent)"
    best = max(
        nodes, key=lambda n: (len(n.cards), max((int(c.get("memory_total_bytes", 0)) for c in n.cards), default=0))
    )
    models = Counter(c.get("model", "?") for c in best.cards)
    text = ", ".join(f"{count} x {model}" for model, count in models.most_common()) or "no GPUs"
    first = best.cards[0] if best.cards else {}
    if first:
        text += f" ({int(first.get('memory_total_bytes', 0)) / GIB:g} GiB"
        if resources.precision and resources.precision not in precisions_of(first.get("compute_capability", "")):
            text += f", without {precision_name(resources.precision)}"
        text += ")"
    return f"largest: {text} on nodes/{best.name}"


class Cluster:
    """Read-only questions about the registered nodes."""

    def __init__(self, engine: Engine, external: Mapping[int, Feasibility] | None = None) -> None:
        self.engine = engine
        self.external = dict(external or {})
        """The submission check of each external engine, by executor kind."""

    def nodes(self) -> list[NodeRow]:
        with Session(self.engine) as session:
            return list(session.exec(select(NodeRow)))

    def check_feasible(self, job: pb.Job, shape: Shape) -> None:
        """FAILED_PRECONDITION when no set of nodes could ever hold the job, even with the cluster
        empty. Jobs of an external engine (Slurm) are asked of that engine instead."""
        if job.executor != pb.EXECUTOR_KIND_AGENTS:
            check = self.external.get(job.executor)
            if check is None:
                kind = pb.ExecutorKind.Name(job.executor)  # type: ignore[arg-type]
                raise FailedPrecondition(f"this scheduler has no {kind} executor; allowed: EXECUTOR_KIND_AGENTS")
            check(job, shape)
            return
        nodes = self.nodes()
        fitting = [n for n in nodes if sum(card_fits(c, job.resources) for c in n.cards) >= shape.gpus_per_node]
        if len(fitting) >= shape.nodes:
            return
        need = describe_need(shape, job.resources)
        where = "no node has" if not fitting else f"the job needs {shape.nodes} nodes, only {len(fitting)} have"
        raise FailedPrecondition(
            f"{where} {need}; {describe_largest(nodes, job.resources)}",
            metadata={"nodes": str(shape.nodes), "gpus_per_node": str(shape.gpus_per_node)},
        )
