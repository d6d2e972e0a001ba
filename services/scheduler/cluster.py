"""The cluster as the database knows it, and whether a submitted job could ever run on it (asked of the
policy core's `infeasibility`, the check `atelier sim` uses too)."""

from __future__ import annotations

from collections.abc import Callable, Mapping

from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from atelier import scheduling as core
from atelier.errors import FailedPrecondition, InvalidArgument
from atelier.scheduler.v1 import resources_pb2 as pb
from services.scheduler.cycle import node_of, request_from
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


def describe_need(shape: Shape, resources: pb.Resources) -> str:
    """The request in the Slurm executor's words (agent jobs are described by the policy core)."""
    parts = [f"{shape.gpus_per_node} GPUs"]
    if resources.min_gpu_memory_bytes:
        parts.append(f"with >= {resources.min_gpu_memory_bytes / GIB:g} GiB")
    if resources.precision:
        parts.append(("and " if len(parts) > 1 else "with ") + precision_name(resources.precision))
    if resources.allowed_card_models:
        parts.append(f"of models {'/'.join(resources.allowed_card_models)}")
    return " ".join(parts)


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
        if shape.gpus_per_node < 1:
            raise InvalidArgument(
                "a job run by agents needs GPUs: give resources.gpus_per_node or resources.gpus >= 1 "
                "(jobs without GPUs can run with executor EXECUTOR_KIND_SLURM)"
            )
        nodes = [node_of(row) for row in self.nodes()]
        reason = core.infeasibility(request_from("submitted", job), nodes)
        if reason:
            hint = "" if nodes else " (start an agent: atelier agent)"
            raise FailedPrecondition(
                reason + hint, metadata={"nodes": str(shape.nodes), "gpus_per_node": str(shape.gpus_per_node)}
            )
