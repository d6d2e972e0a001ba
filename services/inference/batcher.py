"""The dynamic batcher, with Triton's semantics.

Requests wait in one FIFO queue per priority level (1 is the highest and is served first,
strictly). Each model instance is a thread that, when free, forms a batch from the queued requests
in priority order: requests whose non-batch dimensions match the first one's, up to
`max_batch_size` samples. It sends the batch at once when it reaches the maximum or a preferred
size (the largest preferred size it can make), or when nothing else could join it; otherwise it
waits until the oldest request has waited `max_queue_delay_us`. Requests are concatenated along the
batch dimension and the outputs split back by each request's own batch size.

A request that has timed out or whose caller has gone is withdrawn from the queue and never
reaches the model. A full queue refuses new requests (UNAVAILABLE, "Exceeds maximum queue size").
When a batch fails, each of its requests runs again alone, so one bad request fails alone.

A stateful model (the deployment names a state input and output) serves sequences: every request
carries a sequence id, a sequence is bound to one instance at its start, its requests run one at a
time in arrival order (never two in one batch), and batches mix requests of different sequences.
The state output of each request is kept with its sequence and fed back as the state input of the
next (zeros at the start); the end flag, or the idle timeout, frees it.

Small models may run on the caller's thread instead (`run_now`, see `services.inference.inline`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from typing import Any

import numpy as np
from opentelemetry import trace

from atelier.errors import AtelierError, DeadlineExceeded, Internal, Unavailable
from services.inference.inline import INLINE_MAX_NS, InlinePolicy
from services.inference.queues import Outcome, OutputTensor, Pending, Queues, Resolve
from services.inference.requests import Prepared, SequenceFlags
from services.inference.runner import ModelRunner
from services.inference.sequences import SequenceTable
from services.inference.spec import DeploymentSpec
from services.inference.statistics import BACKEND, OTHER, REJECTED, ModelStatistics
from services.inference.tensors import encode
from services.inference.tracing import InferenceSpans

log = logging.getLogger(__name__)
Array = np.ndarray[Any, Any]


class Batcher:
    """Queues and instance threads of one loaded model version."""

    def __init__(
        self,
        model: str,
        runner: ModelRunner,
        spec: DeploymentSpec,
        statistics: ModelStatistics,
        version: int = 0,
        spans: InferenceSpans | None = None,
        inline_max_ns: int = INLINE_MAX_NS,
    ) -> None:
        self.model = model
        self.version = version
        self.spans = spans or InferenceSpans()
        self.runner = runner
        self.spec = spec
        self.statistics = statistics
        self.batched = runner.signature.batched
        self.max_batch = spec.max_batch_size if self.batched else 1
        self._queues = Queues([deque() for _ in range(spec.priority_levels)])
        self._cond = threading.Condition()
        self._stopping = False
        self._draining = False
        self._instances = spec.instances
        self._busy = 0
        """Executions running: instance threads' batches and `run_now` calls (at most `instances`)."""
        self.inline = InlinePolicy(not spec.stateful and spec.max_queue_delay_us == 0, inline_max_ns)
        self._threads = [
            threading.Thread(target=self._serve, args=(i,), name=f"infer-{model}-{i}", daemon=True)
            for i in range(spec.instances)
        ]
        self.stateful = spec.stateful
        names_in = [t.name for t in runner.signature.inputs]
        names_out = [t.name for t in runner.signature.outputs]
        self._state_in = names_in.index(spec.state_input) if self.stateful else -1
        self._state_out = names_out.index(spec.state_output) if self.stateful else -1
        self._sequences = SequenceTable(model, spec, spec.instances)

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    @property
    def queued(self) -> int:
        with self._cond:
            return self._queues.size

    @property
    def sequences(self) -> int:
        """Sequences held (stateful models)."""
        with self._cond:
            return len(self._sequences)

    def submit(
        self,
        prepared: Prepared,
        priority: int,
        timeout_us: int,
        resolve: Resolve,
        flags: SequenceFlags | None = None,
        span: trace.SpanContext | None = None,
    ) -> Pending:
        """Queue a validated request; `resolve` is called from an instance thread with its outcome."""
        levels = self.spec.priority_levels
        # As Triton: 0, or a level the model does not have, means the default level.
        level = priority if 1 <= priority <= levels else self.spec.default_priority
        now = time.monotonic_ns()
        timeout = timeout_us or self.spec.default_timeout_us
        key = tuple(a.shape[1:] for a in prepared.arrays) if self.batched else ()
        deadline = now + timeout * 1000 if timeout else None
        pending = Pending(prepared, level, now, deadline, resolve, key, flags=flags, span=span)
        with self._cond:
            if self._stopping:
                raise Unavailable(f"model '{self.model}' is unloading")
            if self.spec.max_queue_size and self._queues.size >= self.spec.max_queue_size:
                raise Unavailable("Exceeds maximum queue size", metadata={"model": self.model})
            if self.stateful:
                pending.sequence = self._sequences.join(pending.flags, prepared.batch_size, now)
            self._queues.levels[level - 1].append(pending)
            self._queues.size += 1
            if self.stateful:
                self._cond.notify_all()  # only the sequence's own instance may take it
            else:
                self._cond.notify()
        return pending

    def run_now(self, prepared: Prepared, arrival_ns: int, span: trace.SpanContext | None = None) -> Outcome | None:
        """Run a request at once on the calling thread when that is cheaper than queueing it (see the
        module's docstring); None when it must be queued (`submit`) instead."""
        mode = self.inline.mode(arrival_ns)
        if mode is None:
            return None
        with self._cond:
            free = self._busy == 0 if mode == "quiet" else self._busy < self._instances
            if self._stopping or self._draining or self._queues.size or not free:
                return None
            self._busy += 1
        outcomes: list[Outcome] = []
        pending = Pending(
            prepared,
            self.spec.default_priority,
            arrival_ns,
            None,
            outcomes.append,
            (),
            "taken",
            time.monotonic_ns(),
            span=span,
        )
        try:
            self._execute([pending])
        finally:
            with self._cond:
                self._busy -= 1
                if self._queues.size:
                    self._cond.notify()
        return outcomes[0]

    def _release(self, pending: Pending, ran: bool) -> None:
        if pending.sequence is not None:
            self._sequences.release(pending.sequence, pending.flags, ran)

    def withdraw(self, pending: Pending) -> bool:
        """Take a request out of the queue before it runs; False when an instance already has it."""
        with self._cond:
            if pending.state != "queued":
                return False
            pending.state = "withdrawn"
            self._queues.remove(pending)
            self._release(pending, ran=False)
            self._cond.notify_all()
            return True

    def drain(self) -> None:
        """Run everything already queued without waiting for batches to fill, then stop the
        instances: how a replaced version leaves once new requests go to its successor."""
        with self._cond:
            self._draining = True
            self._cond.notify_all()
        for thread in self._threads:
            thread.join()

    def stop(self) -> None:
        """Refuse new requests, fail the queued ones, let running batches finish."""
        with self._cond:
            self._stopping = True
            dropped = self._queues.ordered()
            for pending in dropped:
                pending.state = "withdrawn"
            self._queues = Queues([deque() for _ in range(self.spec.priority_levels)])
            self._cond.notify_all()
        now = time.monotonic_ns()
        for pending in dropped:
            self.statistics.failed(now - pending.arrival_ns, OTHER)
            pending.resolve(Unavailable(f"model '{self.model}' was unloaded before the request ran"))
        for thread in self._threads:
            thread.join()

    # Instance threads ------------------------------------------------------------------------

    def _serve(self, instance: int) -> None:
        while True:
            batch = self._next_batch(instance)
            if batch is None:
                return
            try:
                self._execute(batch)
            finally:
                with self._cond:
                    self._busy -= 1
                    if self.stateful:
                        self._finish(batch)  # normally done already, before the answers went out
                        self._cond.notify_all()
                    elif self._queues.size:
                        self._cond.notify()

    def _finish(self, batch: list[Pending]) -> None:
        """Free the sequences of requests that ran (once each); the caller holds the lock."""
        for pending in batch:
            if pending.state == "taken":
                pending.state = "done"
                self._release(pending, ran=True)

    def _next_batch(self, instance: int) -> list[Pending] | None:
        with self._cond:
            while not self._stopping:
                if self._draining and not self._queues.size:
                    return None
                if self._busy >= self._instances:  # a `run_now` holds the free instance
                    self._cond.wait()
                    continue
                batch, wait_ns = self._form(time.monotonic_ns(), instance)
                if batch:
                    self._busy += 1
                    now = time.monotonic_ns()
                    for pending in batch:
                        pending.state = "taken"
                        pending.taken_ns = now
                        self._queues.remove(pending)
                        if pending.sequence is not None:
                            pending.sequence.busy = True
                    return batch
                self._cond.wait(None if wait_ns is None else wait_ns / 1e9)
        return None

    def _expire(self, now: int) -> int | None:
        """Fail the queued requests whose timeout has passed; the nearest remaining deadline."""
        nearest: int | None = None
        for pending in self._queues.ordered():
            if pending.deadline_ns is None:
                continue
            if pending.deadline_ns <= now:
                pending.state = "withdrawn"
                self._queues.remove(pending)
                self._release(pending, ran=False)
                self.statistics.failed(now - pending.arrival_ns, REJECTED)
                pending.resolve(DeadlineExceeded("Request timeout expired", metadata={"model": self.model}))
            elif nearest is None or pending.deadline_ns < nearest:
                nearest = pending.deadline_ns
        return nearest

    def _eligible(self, instance: int) -> list[Pending]:
        queued = self._queues.ordered()
        return self._sequences.eligible(queued, instance) if self.stateful else queued

    def _form(self, now: int, instance: int = 0) -> tuple[list[Pending], int | None]:
        """The batch to send now, or none and how long to wait (None: until notified)."""
        nearest = self._expire(now)
        candidates = self._eligible(instance)
        if not candidates:
            return [], None
        if not self.batched:
            return candidates[:1], None
        batch: list[Pending] = []
        size = 0
        preferred_at = 0
        can_grow = True
        for pending in candidates:
            samples = pending.prepared.batch_size
            if pending.key != candidates[0].key or size + samples > self.max_batch:
                can_grow = False
                break
            batch.append(pending)
            size += samples
            if size in self.spec.preferred_batch_sizes:
                preferred_at = len(batch)
        if size >= self.max_batch or not can_grow:
            return batch, None
        if preferred_at:
            return batch[:preferred_at], None
        delay_ns = 0 if self._draining else self.spec.max_queue_delay_us * 1000
        waited = now - min(p.arrival_ns for p in batch)
        if waited >= delay_ns:
            return batch, None
        wait = delay_ns - waited
        if nearest is not None:
            wait = min(wait, nearest - now)
        return [], max(wait, 1)

    def _state_of(self, pending: Pending) -> Array:
        assert pending.sequence is not None
        starts = pending.flags is not None and pending.flags.start
        return self._sequences.state_in(pending.sequence, starts, self.runner.signature.inputs[self._state_in])

    def _execute(self, batch: list[Pending]) -> None:
        try:
            if self.spans.recording():
                samples = sum(p.prepared.batch_size for p in batch)
                with self.spans.batch(self.model, self.version, samples, [p.span for p in batch]):
                    outcomes = self._run(batch)
            else:  # no span to make: skip the context manager (a few microseconds a request)
                outcomes = self._run(batch)
        except Exception as error:  # noqa: BLE001 - a model failure is the batch's, not the server's
            if len(batch) > 1:
                for pending in batch:
                    self._execute([pending])
                return
            log.warning("model %s failed: %s", self.model, error)
            message = error.message if isinstance(error, AtelierError) else f"{type(error).__name__}: {error}"
            outcomes = [Internal(f"model '{self.model}' failed: {message}", metadata={"model": self.model})]
        done = self.inline.last_done_ns = time.monotonic_ns()
        if self.stateful:  # free the sequences before answering: a client's next request may come at once
            with self._cond:
                self._finish(batch)
                self._cond.notify_all()
        for pending, outcome in zip(batch, outcomes, strict=True):
            if isinstance(outcome, AtelierError):
                self.statistics.failed(done - pending.arrival_ns, BACKEND)
            else:
                self.statistics.succeeded(done - pending.arrival_ns, pending.taken_ns - pending.arrival_ns)
            pending.resolve(outcome)

    def _run(self, batch: list[Pending]) -> list[Outcome]:
        start = time.monotonic_ns()
        count = len(batch[0].prepared.arrays)
        # The one copy of the inputs: into a writable, contiguous batch buffer.
        if len(batch) == 1:  # a request alone (every request at one client): its arrays copied as they are
            inputs = [array.copy() for array in batch[0].prepared.arrays]
        else:
            inputs = [np.concatenate([p.prepared.arrays[i] for p in batch]) for i in range(count)]
        if self.stateful:
            inputs.insert(self._state_in, np.concatenate([self._state_of(p) for p in batch]))
        samples = sum(p.prepared.batch_size for p in batch)
        computed = time.monotonic_ns()
        outputs = self.runner.run(inputs)
        inferred = time.monotonic_ns()
        if self.stateful:
            for row, pending in enumerate(batch):
                assert pending.sequence is not None
                pending.sequence.state = outputs[self._state_out][row : row + 1].copy()
        outcomes: list[Outcome] = []
        offset = 0
        for pending in batch:
            size = pending.prepared.batch_size
            wanted = []
            for spec in pending.prepared.outputs:
                full = outputs[self.runner.signature.outputs.index(spec)]
                if self.batched and full.shape[0] != samples:
                    raise Internal(
                        f"output '{spec.name}' has {full.shape[0]} rows for a batch of {samples}; "
                        "a batching model must keep the batch dimension"
                    )
                part = full[offset : offset + size] if self.batched and size != samples else full
                wanted.append(OutputTensor(spec, tuple(part.shape), encode(spec.datatype, part)))
            outcomes.append(wanted)
            offset += size
        done = time.monotonic_ns()
        self.statistics.executed(samples, len(batch), computed - start, inferred - computed, done - inferred)
        self.inline.executed(done - start)
        return outcomes
