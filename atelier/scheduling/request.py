"""What a job asks of the cluster, checked when it is built so that every later step can trust it."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from atelier.errors import InvalidArgument
from atelier.scheduling.catalogue import CARD_MODELS, GIB
from atelier.scheduling.inventory import CardKind
from atelier.scheduling.precision import Precision, parse_precision


@dataclass(frozen=True)
class CardFilter:
    """The per-card part of a request: which cards may serve one of its GPUs."""

    min_memory_bytes: int = 0
    precision: Precision | None = None
    allowed_models: frozenset[str] = frozenset()
    forbidden_models: frozenset[str] = frozenset()
    _hash: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # Filters key the queue's and the cycle's tables; hashing four fields on every lookup adds up.
        fields = (self.min_memory_bytes, self.precision, self.allowed_models, self.forbidden_models)
        object.__setattr__(self, "_hash", hash(fields))

    def __hash__(self) -> int:
        return self._hash

    def accepts(self, kind: CardKind) -> bool:
        """Whether a card of this kind meets memory, precision and model constraints."""
        return (
            kind.memory_bytes >= self.min_memory_bytes
            and (self.precision is None or self.precision in kind.precisions)
            and (not self.allowed_models or kind.model in self.allowed_models)
            and kind.model not in self.forbidden_models
        )

    def rejections(self, kind: CardKind) -> list[str]:
        """Why a card of this kind does not qualify (`["32 GiB < 80 GiB", "without bf16"]`), empty if it does."""
        reasons = []
        if self.allowed_models and kind.model not in self.allowed_models:
            reasons.append("not an allowed model")
        if kind.model in self.forbidden_models:
            reasons.append("a forbidden model")
        if kind.memory_bytes < self.min_memory_bytes:
            reasons.append(f"{kind.memory_bytes / GIB:g} GiB < {self.min_memory_bytes / GIB:g} GiB")
        if self.precision is not None and self.precision not in kind.precisions:
            reasons.append(f"without {self.precision.value}")
        return reasons

    def describe(self) -> str:
        """`"with >= 80 GiB and bf16 of models A100-80/H100"`, empty for no constraint."""
        parts = []
        if self.min_memory_bytes:
            parts.append(f">= {self.min_memory_bytes / GIB:g} GiB")
        if self.precision is not None:
            parts.append(self.precision.value)
        text = "with " + " and ".join(parts) if parts else ""
        if self.allowed_models:
            text += f" of models {'/'.join(sorted(self.allowed_models))}"
        if self.forbidden_models:
            text += f" except {'/'.join(sorted(self.forbidden_models))}"
        return text.strip()


def describe_need(
    gpus_per_node: int, cards: CardFilter, cpus_per_node: float = 0.0, memory_bytes_per_node: int = 0
) -> str:
    """What one node of a gang must give: `"4 GPUs with >= 80 GiB and bf16 and 64 CPUs"`, `"1 GPU"`."""
    text = f"{gpus_per_node} GPU{'' if gpus_per_node == 1 else 's'}"
    described = cards.describe()
    if described:
        text += " " + described
    extras = []
    if cpus_per_node:
        extras.append(f"{cpus_per_node:g} CPU{'' if cpus_per_node == 1 else 's'}")
    if memory_bytes_per_node:
        extras.append(f"{memory_bytes_per_node / GIB:g} GiB host memory")
    if extras:
        text += " and " + " and ".join(extras)
    return text


@dataclass(frozen=True)
class JobRequest:
    """A job's resource request, resolved to a gang of `nodes` nodes with `gpus_per_node` cards each.

    Build one directly when the shape is known, or with `JobRequest.of(...)` to resolve a total GPU
    count into nodes x GPUs per node. Invalid values raise INVALID_ARGUMENT naming the field and value.
    """

    job_id: str
    nodes: int = 1
    gpus_per_node: int = 1
    cards: CardFilter = CardFilter()
    cpus_per_node: float = 0.0
    memory_bytes_per_node: int = 0
    max_runtime_s: float = 24 * 3600.0
    priority_class: str = "normal"
    project: str = "default"
    user: str = ""
    submit_time: float = 0.0
    labels: tuple[tuple[str, str], ...] = field(default=(), compare=False)
    shape: int = field(init=False, repr=False, compare=False)
    """What placement looks at, interned to an int: requests with the same shape fit exactly the same free cards
    (nodes, GPUs per node, card filter, CPUs and memory per node)."""
    gang: int = field(init=False, repr=False, compare=False)
    """The shape without CPUs and memory, interned too: when one request of a gang shape does not fit even
    without CPUs and memory, none of that gang shape does."""

    def __post_init__(self) -> None:
        if not self.job_id:
            raise InvalidArgument("job_id must not be empty")
        if self.nodes < 1:
            raise InvalidArgument(f"nodes must be >= 1, got {self.nodes}")
        if self.gpus_per_node < 1:
            raise InvalidArgument(f"gpus_per_node must be >= 1, got {self.gpus_per_node}")
        for name in ("cpus_per_node", "memory_bytes_per_node"):
            if getattr(self, name) < 0:
                raise InvalidArgument(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.cards.min_memory_bytes < 0:
            raise InvalidArgument(f"min_gpu_memory must be >= 0, got {self.cards.min_memory_bytes}")
        if not self.max_runtime_s > 0:
            raise InvalidArgument(f"max_runtime_s must be > 0, got {self.max_runtime_s}")
        if not self.project:
            raise InvalidArgument("project must not be empty")
        overlap = self.cards.allowed_models & self.cards.forbidden_models
        if overlap:
            raise InvalidArgument(f"card models {sorted(overlap)} are both allowed and forbidden")
        # One object per distinct filter, so that table lookups find it by identity.
        object.__setattr__(self, "cards", _FILTERS.setdefault(self.cards, self.cards))
        shape = (self.nodes, self.gpus_per_node, self.cards, self.cpus_per_node, self.memory_bytes_per_node)
        object.__setattr__(self, "shape", _SHAPES.setdefault(shape, len(_SHAPES)))
        gang = (self.nodes, self.gpus_per_node, self.cards)
        object.__setattr__(self, "gang", _GANGS.setdefault(gang, len(_GANGS)))

    @classmethod
    def of(
        cls,
        job_id: str,
        *,
        gpus: int | None = None,
        nodes: int | None = None,
        gpus_per_node: int | None = None,
        min_gpu_memory_gib: float = 0.0,
        precision: Precision | str | None = None,
        allowed_models: Iterable[str] = (),
        forbidden_models: Iterable[str] = (),
        max_gpus_per_node: int = 8,
        cpus_per_node: float = 0.0,
        memory_gib_per_node: float = 0.0,
        max_runtime_s: float = 24 * 3600.0,
        priority_class: str = "normal",
        project: str = "default",
        user: str = "",
        submit_time: float = 0.0,
    ) -> JobRequest:
        """A request from the user-facing fields: `gpus` alone spreads over the fewest nodes of at most
        `max_gpus_per_node` cards (the largest node of the cluster); model names are checked against the
        catalogue."""
        shape = resolve_shape(nodes=nodes, gpus_per_node=gpus_per_node, gpus=gpus, max_gpus_per_node=max_gpus_per_node)
        cards = CardFilter(
            min_memory_bytes=int(min_gpu_memory_gib * GIB),
            precision=parse_precision(precision) if isinstance(precision, str) else precision,
            allowed_models=_known_models(allowed_models, "allowed_models"),
            forbidden_models=_known_models(forbidden_models, "forbidden_models"),
        )
        return cls(
            job_id,
            shape[0],
            shape[1],
            cards,
            cpus_per_node=cpus_per_node,
            memory_bytes_per_node=int(memory_gib_per_node * GIB),
            max_runtime_s=max_runtime_s,
            priority_class=priority_class,
            project=project,
            user=user,
            submit_time=submit_time,
        )

    @property
    def gpus(self) -> int:
        """GPUs of the whole gang."""
        return self.nodes * self.gpus_per_node

    def describe(self) -> str:
        """`"4 GPUs with >= 80 GiB and bf16"`, `"2 nodes x 8 GPUs and 16 CPUs"`: the gang in words."""
        text = describe_need(self.gpus_per_node, self.cards, self.cpus_per_node, self.memory_bytes_per_node)
        return f"{self.nodes} nodes x {text}" if self.nodes > 1 else text


_FILTERS: dict[CardFilter, CardFilter] = {}
_SHAPES: dict[tuple[int, int, CardFilter, float, int], int] = {}
_GANGS: dict[tuple[int, int, CardFilter], int] = {}


def resolve_shape(
    *, nodes: int | None, gpus_per_node: int | None, gpus: int | None, max_gpus_per_node: int = 8
) -> tuple[int, int]:
    """(nodes, gpus per node) from any consistent subset of the three; INVALID_ARGUMENT when they contradict.

    `gpus` alone is packed onto the fewest nodes that split it evenly with at most `max_gpus_per_node` each
    (torchrun needs the same number of workers on every node).
    """
    for name, value in (("nodes", nodes), ("gpus_per_node", gpus_per_node), ("gpus", gpus)):
        if value is not None and value < 1:
            raise InvalidArgument(f"{name} must be >= 1 when given, got {value}")
    if gpus is None:
        return nodes or 1, gpus_per_node or 1
    if gpus_per_node is not None:
        count = nodes or gpus // gpus_per_node
        if count * gpus_per_node != gpus:
            raise InvalidArgument(
                f"gpus ({gpus}) contradicts nodes x gpus_per_node ({nodes or '?'} x {gpus_per_node}); give one of them"
            )
        return count, gpus_per_node
    if nodes is not None:
        if gpus % nodes:
            raise InvalidArgument(f"gpus ({gpus}) does not split evenly over {nodes} nodes")
        return nodes, gpus // nodes
    for count in range(max(1, -(-gpus // max_gpus_per_node)), gpus + 1):
        if gpus % count == 0 and gpus // count <= max_gpus_per_node:
            return count, gpus // count
    return gpus, 1


def _known_models(models: Iterable[str], field_name: str) -> frozenset[str]:
    chosen = frozenset(models)
    unknown = sorted(chosen - CARD_MODELS.keys())
    if unknown:
        raise InvalidArgument(f"{field_name}: unknown card models {unknown}; known: {', '.join(sorted(CARD_MODELS))}")
    return chosen
