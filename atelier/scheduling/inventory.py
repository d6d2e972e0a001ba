"""The cluster as the scheduler sees it: nodes, their cards and how the cards are connected.

Everything here is frozen: a cycle reads an inventory, it never changes one. What is free is worked out
per cycle from the running jobs (see `capacity.FreeCapacity`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import IntEnum
from functools import cached_property

from atelier.errors import InvalidArgument
from atelier.scheduling.catalogue import card_model
from atelier.scheduling.precision import Capability, Precision, precisions_for

# The most cards a declared node may hold (the largest servers have 16).
MAX_CARDS_PER_NODE = 64


class Interconnect(IntEnum):
    """How two cards of a node are connected, best first (NVML's topology common ancestor, plus NVLink)."""

    NVLINK = 0
    SAME_BOARD = 1  # NVML level 0 (internal)
    PCIE_SWITCH = 2  # level 10 (single switch)
    PCIE_MULTI_SWITCH = 3  # level 20
    HOST_BRIDGE = 4  # level 30
    NUMA = 5  # level 40 (same NUMA node)
    SYSTEM = 6  # level 50 (across NUMA nodes)

    @classmethod
    def from_nvml(cls, level: int, *, nvlink: bool = False) -> Interconnect:
        """From `nvmlDeviceGetTopologyCommonAncestor`'s level (0, 10, ..., 50) and whether an NVLink joins them."""
        if nvlink:
            return cls.NVLINK
        if level not in (0, 10, 20, 30, 40, 50):
            raise InvalidArgument(f"NVML topology level {level} is not one of 0, 10, 20, 30, 40, 50")
        return cls(level // 10 + 1)


@dataclass(frozen=True)
class CardKind:
    """What placement needs to know about a card besides where it is: interned, so it compares fast."""

    model: str
    memory_bytes: int
    capability: Capability
    _hash: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # Kinds key every free-capacity table; their hash is worked out once.
        object.__setattr__(self, "_hash", hash((self.model, self.memory_bytes, self.capability)))

    def __hash__(self) -> int:
        return self._hash

    @cached_property
    def precisions(self) -> frozenset[Precision]:
        """Precisions this kind computes natively."""
        return precisions_for(self.capability)

    @cached_property
    def scarcity(self) -> tuple[int, int, Capability]:
        """Sort key, least valuable first: fewer native precisions, then less memory, then older capability.
        Best fit hands out the lowest kind that meets a request, keeping bf16/fp8 and big cards for jobs
        that need them."""
        return len(self.precisions), self.memory_bytes, self.capability


@dataclass(frozen=True)
class Card:
    """One GPU of a node, as its agent reports it."""

    index: int
    model: str
    memory_total_bytes: int
    capability: Capability
    uuid: str = ""
    memory_free_bytes: int | None = None
    mig_enabled: bool = False
    healthy: bool = True

    @property
    def precisions(self) -> frozenset[Precision]:
        """Precisions the card computes natively (from its capability)."""
        return precisions_for(self.capability)

    @cached_property
    def kind(self) -> CardKind:
        """The interned (model, memory, capability) of the card."""
        return _intern_kind(self.model, self.memory_total_bytes, self.capability)


_KINDS: dict[tuple[str, int, Capability], CardKind] = {}


def _intern_kind(model: str, memory_bytes: int, capability: Capability) -> CardKind:
    key = (model, memory_bytes, capability)
    kind = _KINDS.get(key)
    if kind is None:
        kind = _KINDS[key] = CardKind(model, memory_bytes, capability)
    return kind


Topology = tuple[tuple[Interconnect, ...], ...]
"""Square matrix: `topology[a][b]` is the link between the cards at positions a and b of `Node.cards`."""

_TOPOLOGIES: dict[Topology, Topology] = {}


@dataclass(frozen=True)
class Node:
    """A GPU node: its cards, the links between them, CPUs and host memory, and whether it takes jobs."""

    name: str
    cards: tuple[Card, ...]
    topology: Topology = ()
    cpus: float = 0.0
    memory_bytes: int = 0
    schedulable: bool = True
    labels: tuple[tuple[str, str], ...] = field(default=())

    def __post_init__(self) -> None:
        indices = [card.index for card in self.cards]
        if len(set(indices)) != len(indices):
            raise InvalidArgument(f"node {self.name!r} lists a card index twice: {indices}")
        if not self.topology:
            object.__setattr__(self, "topology", uniform_topology(len(self.cards), Interconnect.SYSTEM))
        elif len(self.topology) != len(self.cards) or any(len(row) != len(self.cards) for row in self.topology):
            raise InvalidArgument(
                f"node {self.name!r}: topology must be {len(self.cards)} x {len(self.cards)}, one row per card"
            )
        # One object per distinct matrix, so that memos can key on its identity instead of hashing 64 links.
        object.__setattr__(self, "topology", _TOPOLOGIES.setdefault(self.topology, self.topology))

    @cached_property
    def position(self) -> dict[int, int]:
        """Card index -> position in `cards` (and in the topology matrix)."""
        return {card.index: pos for pos, card in enumerate(self.cards)}

    @cached_property
    def usable(self) -> frozenset[int]:
        """Indices of the cards jobs may be given: healthy and not in MIG mode (whole-card jobs only)."""
        return frozenset(card.index for card in self.cards if card.healthy and not card.mig_enabled)

    @cached_property
    def card_kinds(self) -> dict[int, CardKind]:
        """Card index -> kind."""
        return {card.index: card.kind for card in self.cards}

    @cached_property
    def kind(self) -> CardKind | None:
        """The one card kind of a homogeneous node; None when it mixes kinds (or has no cards)."""
        kinds = {card.kind for card in self.cards}
        return next(iter(kinds)) if len(kinds) == 1 else None

    def link(self, a: int, b: int) -> Interconnect:
        """The link between the cards with indices a and b."""
        return self.topology[self.position[a]][self.position[b]]


def uniform_topology(count: int, level: Interconnect) -> Topology:
    """Every pair of `count` cards joined by the same kind of link."""
    return tuple(tuple(Interconnect.SAME_BOARD if a == b else level for b in range(count)) for a in range(count))


def island_topology(
    count: int, island: int, *, inside: Interconnect = Interconnect.NVLINK, across: Interconnect = Interconnect.SYSTEM
) -> Topology:
    """Cards in islands of `island` consecutive cards (e.g. NVLink pairs or quads), `across` between islands."""
    if island <= 0:
        raise InvalidArgument(f"island size must be >= 1, got {island}")
    return tuple(
        tuple(
            Interconnect.SAME_BOARD if a == b else inside if a // island == b // island else across
            for b in range(count)
        )
        for a in range(count)
    )


def declared_node(
    name: str,
    model: str,
    count: int,
    *,
    cpus: float = 64.0,
    memory_gib: float = 512.0,
    nvlink_island: int = 0,
    unhealthy: Sequence[int] = (),
) -> Node:
    """A node of `count` cards of a catalogue model, as a declared inventory describes it.

    `nvlink_island` > 0 joins consecutive cards in NVLink islands of that size (PCIe host bridge between islands);
    0 means all cards hang off PCIe across the system.
    """
    if not 0 < count <= MAX_CARDS_PER_NODE:
        raise InvalidArgument(f"node {name!r}: {count} cards; a node holds 1 to {MAX_CARDS_PER_NODE}")
    spec = card_model(model)
    cards = tuple(
        Card(
            index=i,
            model=spec.name,
            memory_total_bytes=spec.memory_bytes,
            capability=spec.capability,
            uuid=f"GPU-{name}-{i}",
            healthy=i not in unhealthy,
        )
        for i in range(count)
    )
    topology = (
        island_topology(count, nvlink_island, across=Interconnect.HOST_BRIDGE)
        if nvlink_island
        else uniform_topology(count, Interconnect.SYSTEM)
    )
    return Node(name, cards, topology, cpus=cpus, memory_bytes=int(memory_gib * 1024**3))
