"""Card models a declared inventory or a trace can name without spelling out memory and capability.

Memory is the marketed size; compute capabilities are NVIDIA's (developer.nvidia.com/cuda-gpus).
Assumption: the Alibaba trace's G2 and G3 are unnamed there; they are taken as 24 GiB with capability 8.6
(an A10-class card) and 48 GiB with capability 8.6 (an A40-class card) respectively, because the trace's
G3 nodes carry twice the host memory of its G2 nodes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from atelier.errors import InvalidArgument
from atelier.scheduling.precision import Capability, Precision, precisions_for

GIB = 1024**3


@dataclass(frozen=True)
class CardModel:
    """A known GPU model: its name as the catalogue spells it, memory and compute capability."""

    name: str
    memory_gib: int
    capability: Capability

    @property
    def memory_bytes(self) -> int:
        """Memory in bytes."""
        return self.memory_gib * GIB

    @property
    def precisions(self) -> frozenset[Precision]:
        """Precisions the model computes natively."""
        return precisions_for(self.capability)


CARD_MODELS: Mapping[str, CardModel] = MappingProxyType(
    {
        model.name: model
        for model in (
            CardModel("P100", 16, (6, 0)),
            CardModel("V100M16", 16, (7, 0)),
            CardModel("V100M32", 32, (7, 0)),
            CardModel("T4", 16, (7, 5)),
            CardModel("RTX-2080TI", 11, (7, 5)),
            CardModel("A10", 24, (8, 6)),
            CardModel("A30", 24, (8, 0)),
            CardModel("A40", 48, (8, 6)),
            CardModel("A100-40", 40, (8, 0)),
            CardModel("A100-80", 80, (8, 0)),
            CardModel("RTX-3090", 24, (8, 6)),
            CardModel("RTX-4090", 24, (8, 9)),
            CardModel("L4", 24, (8, 9)),
            CardModel("L40S", 48, (8, 9)),
            CardModel("H100", 80, (9, 0)),
            CardModel("H200", 141, (9, 0)),
            CardModel("G2", 24, (8, 6)),
            CardModel("G3", 48, (8, 6)),
        )
    }
)


def card_model(name: str) -> CardModel:
    """The catalogue entry of a model; INVALID_ARGUMENT listing the known models otherwise."""
    try:
        return CARD_MODELS[name]
    except KeyError:
        raise InvalidArgument(f"unknown card model {name!r}; known: {', '.join(sorted(CARD_MODELS))}") from None
