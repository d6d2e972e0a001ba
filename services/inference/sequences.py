"""Sequences of a stateful model: which instance serves each, its state, when it ends.

Guarded by the batcher's lock. A sequence is bound to the instance with the fewest sequences when
it starts; of its queued requests only the oldest may run, and only while no other of its requests
runs, so its state advances one request at a time, in order.
"""

from __future__ import annotations

import time
from collections.abc import Sequence as Ordered
from dataclasses import dataclass
from typing import Any

import numpy as np

from atelier.errors import InvalidArgument, Unavailable
from services.inference.requests import SequenceFlags
from services.inference.signature import TensorSpec
from services.inference.spec import DeploymentSpec

Array = np.ndarray[Any, Any]


@dataclass(eq=False)
class Sequence:
    """A live sequence: its instance, its state, its activity."""

    id: str
    instance: int
    state: Array | None = None
    """The last state output (one row); None before its first request ran."""
    outstanding: int = 0
    """Requests queued or running."""
    busy: bool = False
    last_ns: int = 0


class SequenceTable:
    """The live sequences of one batcher."""

    def __init__(self, model: str, spec: DeploymentSpec, instances: int) -> None:
        self.model = model
        self.spec = spec
        self.instances = instances
        self._live: dict[str, Sequence] = {}

    def __len__(self) -> int:
        return len(self._live)

    def join(self, flags: SequenceFlags | None, batch_size: int, now: int) -> Sequence:
        """The sequence a request continues or starts, or InvalidArgument/Unavailable saying why not."""
        if flags is None:
            raise InvalidArgument(
                f"inference request to model '{self.model}' must specify a non-zero or non-empty correlation ID "
                "(the sequence_id parameter)",
                metadata={"model": self.model},
            )
        if batch_size != 1:
            raise InvalidArgument(
                f"inference request for sequence {flags.id} to model '{self.model}' has batch size {batch_size}; "
                "a request of a sequence carries one sample",
                metadata={"model": self.model},
            )
        self._forget_idle(now)
        sequence = self._live.get(flags.id)
        if sequence is None:
            if not flags.start:
                raise InvalidArgument(
                    f"inference request for sequence {flags.id} to model '{self.model}' must specify the START flag "
                    "on the first request of the sequence",
                    metadata={"model": self.model, "sequence_id": flags.id},
                )
            if len(self._live) >= self.spec.max_sequences:
                raise Unavailable(
                    f"model '{self.model}' holds its maximum of {self.spec.max_sequences} sequences; end one "
                    "(sequence_end) or wait for an idle one to time out",
                    metadata={"model": self.model},
                )
            sequence = Sequence(flags.id, self._least_loaded_instance())
            self._live[flags.id] = sequence
        sequence.outstanding += 1
        sequence.last_ns = now
        return sequence

    def release(self, sequence: Sequence, flags: SequenceFlags | None, ran: bool) -> None:
        """A request of the sequence ran (or left the queue); its end frees the sequence."""
        sequence.outstanding -= 1
        sequence.last_ns = time.monotonic_ns()
        if not ran:
            return  # left the queue: another request of the sequence may be running still
        sequence.busy = False
        if flags is not None and flags.end and not sequence.outstanding:
            self._live.pop(sequence.id, None)

    def eligible(self, queued: Ordered[Any], instance: int) -> list[Any]:
        """Of `queued` (in priority order), the requests `instance` may run now."""
        oldest: dict[str, Any] = {}
        for pending in queued:
            first = oldest.get(pending.sequence.id)
            if first is None or pending.arrival_ns < first.arrival_ns:
                oldest[pending.sequence.id] = pending
        return [
            p for p in queued if p.sequence.instance == instance and not p.sequence.busy and oldest[p.sequence.id] is p
        ]

    def state_in(self, sequence: Sequence, starts: bool, spec: TensorSpec) -> Array:
        """The state a request runs with: the sequence's last, or zeros at its start."""
        if sequence.state is None or starts:
            return np.zeros((1, *spec.shape[1:]), dtype=spec.datatype.numpy)
        return sequence.state

    def _least_loaded_instance(self) -> int:
        counts = [0] * self.instances
        for sequence in self._live.values():
            counts[sequence.instance] += 1
        return counts.index(min(counts))

    def _forget_idle(self, now: int) -> None:
        idle_ns = self.spec.sequence_idle_timeout_us * 1000
        for key in [k for k, s in self._live.items() if not s.outstanding and now - s.last_ns > idle_ns]:
            del self._live[key]
