"""The sequence table: binding to instances, the order of a sequence's requests, ends and idling."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from atelier.errors import InvalidArgument, Unavailable
from services.inference.requests import SequenceFlags
from services.inference.sequences import Sequence, SequenceTable
from services.inference.spec import DeploymentSpec, validated


@dataclass(eq=False)
class Queued:
    sequence: Sequence
    arrival_ns: int


def table(**settings: object) -> SequenceTable:
    spec = validated(DeploymentSpec(state_input="h", state_output="h2", **settings))  # type: ignore[arg-type]
    return SequenceTable("rnn", spec, instances=2)


def test_sequences_spread_over_instances_and_only_the_oldest_request_is_eligible() -> None:
    t = table()
    a = t.join(SequenceFlags("a", start=True), 1, 0)
    b = t.join(SequenceFlags("b", start=True), 1, 0)
    assert (a.instance, b.instance) == (0, 1)
    a1, a2, b1 = Queued(a, 1), Queued(a, 2), Queued(b, 3)
    assert t.eligible([a2, a1, b1], 0) == [a1]  # a2 came later, even if queued at a higher level
    assert t.eligible([a2, a1, b1], 1) == [b1]
    a.busy = True
    assert t.eligible([a2], 0) == []


def test_end_frees_and_idle_sequences_are_forgotten() -> None:
    t = table(sequence_idle_timeout_us=1000, max_sequences=2)
    a = t.join(SequenceFlags("a", start=True), 1, 0)
    t.release(a, SequenceFlags("a", end=True), ran=True)
    assert len(t) == 0
    b = t.join(SequenceFlags("b", start=True), 1, 0)
    t.release(b, SequenceFlags("b"), ran=True)
    t.join(SequenceFlags("c", start=True), 1, 0)
    with pytest.raises(Unavailable, match="holds its maximum of 2 sequences"):
        t.join(SequenceFlags("d", start=True), 1, b.last_ns + 999_000)
    t.join(SequenceFlags("d", start=True), 1, b.last_ns + 2_000_000)  # b idled out
    assert len(t) == 2


def test_requests_that_cannot_belong_to_a_sequence() -> None:
    t = table()
    with pytest.raises(InvalidArgument, match="must specify a non-zero or non-empty correlation ID"):
        t.join(None, 1, 0)
    with pytest.raises(InvalidArgument, match="must specify the START flag on the first request"):
        t.join(SequenceFlags("x"), 1, 0)
    with pytest.raises(InvalidArgument, match="has batch size 2; a request of a sequence carries one sample"):
        t.join(SequenceFlags("x", start=True), 2, 0)
    assert len(t) == 0


def test_a_queued_request_leaving_does_not_free_a_running_one() -> None:
    t = table()
    a = t.join(SequenceFlags("a", start=True), 1, 0)
    t.join(SequenceFlags("a"), 1, 0)
    a.busy = True  # the first request runs
    t.release(a, SequenceFlags("a"), ran=False)  # the second timed out in the queue
    assert a.busy
    assert a.outstanding == 1
