"""What the batcher's queues hold: requests waiting for a batch, and the outcomes they are answered with."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from opentelemetry import trace

from atelier.errors import AtelierError
from services.inference.requests import Prepared, SequenceFlags
from services.inference.sequences import Sequence
from services.inference.signature import TensorSpec


@dataclass
class OutputTensor:
    """One output of one request, ready for the wire."""

    spec: TensorSpec
    shape: tuple[int, ...]
    raw: bytes


Outcome = list[OutputTensor] | AtelierError
Resolve = Callable[[Outcome], None]


@dataclass(eq=False)
class Pending:
    """A queued request."""

    prepared: Prepared
    level: int
    arrival_ns: int
    deadline_ns: int | None
    resolve: Resolve
    key: tuple[tuple[int, ...], ...]
    state: str = "queued"  # queued -> taken (-> done, its sequence freed) | withdrawn
    taken_ns: int = 0
    sequence: Sequence | None = None
    flags: SequenceFlags | None = None
    span: trace.SpanContext | None = None
    """The request's span, which the span of the batch carrying it links to."""


@dataclass
class Queues:
    """One FIFO per priority level (level 1 first)."""

    levels: list[deque[Pending]] = field(default_factory=list)
    size: int = 0

    def ordered(self) -> list[Pending]:
        return [p for level in self.levels for p in level]

    def remove(self, pending: Pending) -> None:
        self.levels[pending.level - 1].remove(pending)
        self.size -= 1
