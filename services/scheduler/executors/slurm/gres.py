"""A job's card request in Slurm's terms: the configured GPU (gres) types whose card model satisfies the
request's memory, precision and allowed/forbidden models, and the one `--gres` that asks for them.

Slurm cannot ask for memory or precision, and one `--gres` names at most one type. So: when every
configured type satisfies the request, the job asks untyped (`gpu:N`) and Slurm picks any card; when
only some do, it asks for the least capable of them (lowest compute capability, then memory), which
is Atelier's own best-fit rule: keep the big cards for the jobs that need them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from atelier.errors import FailedPrecondition
from atelier.scheduler.v1 import resources_pb2 as pb
from atelier.scheduling import CardModel, card_model
from atelier.scheduling.precision import Precision
from services.scheduler.cluster import describe_need
from services.scheduler.spec import Shape


@dataclass(frozen=True)
class GpuType:
    """A Slurm GPU type and the card model it stands for."""

    name: str
    model: CardModel

    def describe(self) -> str:
        precisions = ", ".join(p.value for p in Precision if p in self.model.precisions)
        return f"{self.name} = {self.model.name} ({self.model.memory_gib} GiB; {precisions})"


@dataclass(frozen=True)
class GresChoice:
    """What a job asks Slurm for: the `--gres` value (empty without GPUs) and the types that would do."""

    gres: str
    satisfying: tuple[str, ...]


def gpu_types(mapping: Mapping[str, str]) -> list[GpuType]:
    """The configured mapping (Slurm type -> catalogue model); INVALID_ARGUMENT naming an unknown model."""
    return [GpuType(name, card_model(model)) for name, model in sorted(mapping.items())]


def satisfies(kind: GpuType, resources: pb.Resources) -> bool:
    model = kind.model
    if model.memory_bytes < resources.min_gpu_memory_bytes:
        return False
    if resources.precision:
        wanted = pb.Precision.Name(resources.precision).removeprefix("PRECISION_").lower()  # type: ignore[arg-type]
        if Precision(wanted) not in model.precisions:
            return False
    if resources.allowed_card_models and model.name not in resources.allowed_card_models:
        return False
    return model.name not in resources.forbidden_card_models


def choose_gres(types: list[GpuType], resources: pb.Resources, shape: Shape) -> GresChoice:
    """The `--gres` of a job; FAILED_PRECONDITION naming the request and the configured types when
    none of them satisfies it."""
    if shape.gpus_per_node == 0:
        return GresChoice("", ())
    fitting = [kind for kind in types if satisfies(kind, resources)]
    if not fitting:
        configured = "; ".join(kind.describe() for kind in types) or "none (set ATELIER_SCHEDULER_SLURM_GPU_TYPES)"
        raise FailedPrecondition(
            f"no Slurm GPU type gives {describe_need(shape, resources)}; configured types: {configured}",
            metadata={"gpus_per_node": str(shape.gpus_per_node)},
        )
    names = tuple(kind.name for kind in fitting)
    if len(fitting) == len(types):
        return GresChoice(f"gpu:{shape.gpus_per_node}", names)
    least = min(fitting, key=lambda kind: (kind.model.capability, kind.model.memory_gib, kind.name))
    return GresChoice(f"gpu:{least.name}:{shape.gpus_per_node}", names)
