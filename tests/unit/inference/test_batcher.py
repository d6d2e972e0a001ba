"""How the dynamic batcher forms batches, decided at chosen instants (no threads, no clocks)."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import numpy as np
import pytest

from atelier.errors import AtelierError, Unavailable
from services.inference.batcher import Batcher
from services.inference.inline import INLINE_MAX_NS, QUIET_INLINE_MAX_NS, RECENT
from services.inference.protocol import Deliveries
from services.inference.queues import Outcome, Pending
from services.inference.requests import Prepared, SequenceFlags
from services.inference.runner import ModelRunner
from services.inference.signature import Signature, TensorSpec
from services.inference.spec import DeploymentSpec, validated
from services.inference.statistics import ModelStatistics
from services.inference.tensors import DATATYPES

FP32 = DATATYPES["FP32"]
SIGNATURE = Signature((TensorSpec("x", FP32, (-1, -1)),), (TensorSpec("y", FP32, (-1, -1)),))


def batcher(inline_max_ns: int = INLINE_MAX_NS, **settings: Any) -> Batcher:
    runner = ModelRunner(module=lambda x: x * 2, device="cpu", signature=SIGNATURE)
    spec = validated(DeploymentSpec(**settings))
    return Batcher("m", runner, spec, ModelStatistics(), inline_max_ns=inline_max_ns)


def submit(
    b: Batcher, rows: int, width: int = 2, priority: int = 0, timeout_us: int = 0
) -> tuple[Pending, list[Outcome]]:
    outcomes: list[Outcome] = []
    array = np.ones((rows, width), dtype=np.float32)
    pending = b.submit(Prepared([array], rows, list(SIGNATURE.outputs)), priority, timeout_us, outcomes.append)
    return pending, outcomes


def test_sends_at_once_when_the_maximum_is_reached() -> None:
    b = batcher(max_batch_size=4, max_queue_delay_us=1_000_000)
    first, _ = submit(b, 3)
    assert b._form(first.arrival_ns) == ([], 1_000_000_000)
    second, _ = submit(b, 1)
    assert b._form(second.arrival_ns)[0] == [first, second]


def test_sends_the_largest_preferred_size_it_can_make() -> None:
    b = batcher(max_batch_size=8, preferred_batch_sizes=[2, 4], max_queue_delay_us=1_000_000)
    items = [submit(b, 1)[0] for _ in range(5)]
    assert b._form(items[-1].arrival_ns)[0] == items[:4]


def test_otherwise_waits_until_the_oldest_has_waited_the_delay() -> None:
    b = batcher(max_batch_size=8, max_queue_delay_us=1000)
    first, _ = submit(b, 1)
    second, _ = submit(b, 2)
    batch, wait = b._form(first.arrival_ns + 400_000)
    assert batch == []
    assert wait == 600_000
    assert b._form(first.arrival_ns + 1_000_000)[0] == [first, second]


def test_without_a_delay_sends_whatever_is_queued() -> None:
    b = batcher(max_batch_size=8)
    first, _ = submit(b, 1)
    assert b._form(first.arrival_ns)[0] == [first]


def test_a_shape_that_cannot_join_ends_the_batch() -> None:
    b = batcher(max_batch_size=8, max_queue_delay_us=10_000_000)
    narrow, _ = submit(b, 1, width=2)
    wide, _ = submit(b, 1, width=3)
    assert b._form(wide.arrival_ns)[0] == [narrow]


def test_priority_one_is_taken_first() -> None:
    b = batcher(max_batch_size=2, priority_levels=3)
    low, _ = submit(b, 1, priority=3)
    default, _ = submit(b, 1)  # the default level is the lowest, 3
    high, _ = submit(b, 1, priority=1)
    beyond, _ = submit(b, 1, priority=9)  # not a level: the default
    assert b._form(beyond.arrival_ns)[0] == [high, low]
    assert default.level == 3
    assert beyond.level == 3


def test_expired_requests_are_failed_not_batched() -> None:
    b = batcher(max_batch_size=4, max_queue_delay_us=10_000_000)
    expiring, outcomes = submit(b, 1, timeout_us=500)
    other, _ = submit(b, 1)
    assert b._form(expiring.arrival_ns + 100_000) == ([], 400_000)  # the nearest deadline
    now = expiring.arrival_ns + 500_000
    assert b._form(now) == ([], 10_000_000_000 - (now - other.arrival_ns))  # the other one's delay
    assert isinstance(outcomes[0], AtelierError)
    assert outcomes[0].message == "Request timeout expired"
    assert b.queued == 1


def test_a_full_queue_and_withdrawal() -> None:
    b = batcher(max_queue_size=2)
    first, _ = submit(b, 1)
    submit(b, 1)
    with pytest.raises(Unavailable, match="Exceeds maximum queue size"):
        submit(b, 1)
    assert b.withdraw(first)
    assert not b.withdraw(first)
    submit(b, 1)
    assert b.queued == 2


def test_outputs_are_split_back_by_each_requests_rows() -> None:
    b = batcher(max_batch_size=8)
    first, one = submit(b, 1)
    second, two = submit(b, 3)
    first.prepared.arrays[0][:] = 1.0
    second.prepared.arrays[0][:] = np.arange(6, dtype=np.float32).reshape(3, 2)
    b._execute([first, second])
    assert np.frombuffer(one[0][0].raw, np.float32).tolist() == [2.0, 2.0]  # type: ignore[index]
    assert two[0][0].shape == (3, 2)  # type: ignore[index]
    assert np.frombuffer(two[0][0].raw, np.float32).tolist() == [0, 2, 4, 6, 8, 10]  # type: ignore[index]
    snapshot = b.statistics.snapshot()
    assert (snapshot.inference_count, snapshot.execution_count, list(snapshot.batches)) == (4, 1, [4])


def test_drain_runs_what_is_queued_without_waiting_for_the_batch_to_fill() -> None:
    b = batcher(max_batch_size=8, max_queue_delay_us=3_600_000_000)
    b.start()
    _, first = submit(b, 1)
    _, second = submit(b, 2)
    b.drain()  # returns once the instance threads have stopped
    assert [o[0].shape for o in (first[0], second[0])] == [(1, 2), (2, 2)]  # type: ignore[index]
    assert b.statistics.snapshot().execution_count == 1


def test_stop_fails_what_is_queued() -> None:
    b = batcher(max_batch_size=8, max_queue_delay_us=3_600_000_000)
    b.start()
    _, outcomes = submit(b, 1)
    b.stop()
    assert isinstance(outcomes[0], Unavailable)
    assert "unloaded before the request ran" in outcomes[0].message
    with pytest.raises(Unavailable, match="is unloading"):
        submit(b, 1)


def prepared(rows: int, value: float = 1.0) -> Prepared:
    return Prepared([np.full((rows, 2), value, dtype=np.float32)], rows, list(SIGNATURE.outputs))


def test_an_idle_batcher_runs_a_fast_model_on_the_callers_thread() -> None:
    # No instance thread started: only run_now can run anything. What counts as fast is set far above
    # what one execution may take on a loaded machine: this checks the rule, not the machine's speed.
    b = batcher(max_batch_size=8, inline_max_ns=60 * 10**9)
    assert b.run_now(prepared(1), time.monotonic_ns()) is None  # not measured yet: queue it
    first, _ = submit(b, 1)
    b._execute([b._form(first.arrival_ns)[0][0]])
    b._queues.remove(first)
    outcome = b.run_now(prepared(2, 3.0), time.monotonic_ns())
    assert isinstance(outcome, list)
    assert outcome[0].shape == (2, 2)
    assert np.frombuffer(outcome[0].raw, np.float32).tolist() == [6.0] * 4
    snapshot = b.statistics.snapshot()
    assert (snapshot.execution_count, snapshot.success.count, list(snapshot.batches)) == (2, 2, [1, 2])


def test_run_now_leaves_to_the_queue_what_it_must_not_run_at_once() -> None:
    fast = batcher(max_batch_size=8, instances=1)
    fast.inline.recent = [1_000] * RECENT
    queued, _ = submit(fast, 1)
    assert fast.run_now(prepared(1), time.monotonic_ns()) is None  # something queued goes first
    fast.withdraw(queued)
    fast._busy = 1  # the one instance is running a batch
    assert fast.run_now(prepared(1), time.monotonic_ns()) is None
    fast._busy = 0
    assert fast.run_now(prepared(1), time.monotonic_ns()) is not None
    waiting = batcher(max_batch_size=8, max_queue_delay_us=1000)  # a batch may still fill
    waiting.inline.recent = [1_000] * RECENT
    assert waiting.run_now(prepared(1), time.monotonic_ns()) is None


def slow_batcher(instances: int = 1) -> Batcher:
    """A batcher of a model measured slower than INLINE_MAX_NS (each execution sleeps 1 ms)."""

    def slow(x: Any) -> Any:
        time.sleep(0.001)
        return x

    runner = ModelRunner(module=slow, device="cpu", signature=SIGNATURE)
    b = Batcher("m", runner, validated(DeploymentSpec(max_batch_size=8, instances=instances)), ModelStatistics())
    for _ in range(RECENT):
        pending, _ = submit(b, 1)
        b._execute([pending])
        b._queues.remove(pending)
    assert min(b.inline.recent) > INLINE_MAX_NS
    return b


def test_a_slow_model_is_not_run_on_the_callers_thread_when_requests_follow_closely() -> None:
    b = slow_batcher()
    assert b.run_now(prepared(1), b.inline.last_done_ns) is None  # arrived as the last execution ended


def test_a_quiet_batcher_runs_a_slow_model_on_the_callers_thread() -> None:
    # Arriving long after the last execution ended: one client waiting on each answer.
    b = slow_batcher(instances=2)
    later = b.inline.last_done_ns + 10 * 10**9
    outcome = b.run_now(prepared(1, 2.0), later)
    assert isinstance(outcome, list)
    assert np.frombuffer(outcome[0].raw, np.float32).tolist() == [2.0, 2.0]
    b._busy = 1  # another execution running: not quiet, even with an instance free
    assert b.run_now(prepared(1), later) is None
    b._busy = 0
    b.inline.recent = [QUIET_INLINE_MAX_NS + 1] * RECENT  # too slow to hold the caller's thread at all
    assert b.run_now(prepared(1), later) is None


def test_deliveries_settle_futures_on_the_loop_in_one_wake_up() -> None:
    async def scenario() -> tuple[list[str], int, bool]:
        loop = asyncio.get_running_loop()
        deliveries = Deliveries(loop)
        futures: list[asyncio.Future[Outcome]] = [loop.create_future() for _ in range(3)]
        futures[1].cancel()  # a caller that has gone
        wake_ups: list[object] = []
        original = loop.call_soon_threadsafe

        def counting(callback: Any, *args: Any) -> Any:
            wake_ups.append(callback)
            return original(callback, *args)

        loop.call_soon_threadsafe = counting  # type: ignore[method-assign,assignment]

        def instance_thread() -> None:
            for index, future in enumerate(futures):
                deliveries.put(future, Unavailable(f"outcome {index}"))

        worker = threading.Thread(target=instance_thread)
        worker.start()
        worker.join()
        messages = [str(getattr(await futures[i], "message", "")) for i in (0, 2)]
        return messages, len(wake_ups), futures[1].cancelled()

    assert asyncio.run(scenario()) == (["outcome 0", "outcome 2"], 1, True)


def test_a_sequence_that_ended_is_free_before_its_answer_goes_out() -> None:
    # A client that starts its next sequence the moment the last answer arrives must find the slot free.
    signature = Signature(
        (TensorSpec("x", FP32, (-1, 2)), TensorSpec("h", FP32, (-1, 2))),
        (TensorSpec("y", FP32, (-1, 2)), TensorSpec("h2", FP32, (-1, 2))),
    )
    runner = ModelRunner(module=lambda x, h: (x + h, h + 1), device="cpu", signature=signature)
    spec = validated(DeploymentSpec(state_input="h", state_output="h2", max_sequences=1))
    b = Batcher("rnn", runner, spec, ModelStatistics())
    b.start()
    seen: list[object] = []
    answered = threading.Event()

    def prepared_x() -> Prepared:
        return Prepared([np.ones((1, 2), dtype=np.float32)], 1, [signature.outputs[0]])

    def on_answer(outcome: Outcome) -> None:
        seen.append(outcome)
        try:
            b.submit(prepared_x(), 0, 0, lambda _: None, SequenceFlags("next", start=True))
        except AtelierError as error:
            seen.append(error)
        answered.set()

    b.submit(prepared_x(), 0, 0, on_answer, SequenceFlags("only", start=True, end=True))
    assert answered.wait(30)
    b.stop()
    assert len(seen) == 1
    assert isinstance(seen[0], list)
