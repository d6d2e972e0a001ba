"""The SDK's metric buffer: what the training loop logs is what the registry receives."""

from __future__ import annotations

import threading

import pytest

from atelier.registry.v1 import registry_service_pb2 as rpc
from atelier.tracking.buffer import BufferReport, MetricBuffer


def _points(batches: list[rpc.MetricColumns]) -> list[tuple[str, int, float]]:
    return [
        (columns.keys[index], step, value)
        for columns in batches
        for index, step, value in zip(columns.key_index, columns.steps, columns.values, strict=True)
    ]


def test_points_arrive_in_order_with_their_keys_and_steps() -> None:
    batches: list[rpc.MetricColumns] = []
    buffer = MetricBuffer(batches.append, batch=4, interval=0.01)
    logged = {"loss": 0.5, "acc": 1}
    buffer.add(logged, 0)
    logged["loss"] = 9.0  # the caller may reuse its dict: what was logged stays logged
    buffer.add({"loss": 0.25}, 1)
    buffer.add({"acc": 0.75, "lr": 0.01, "loss": 0.125}, 2)
    report = buffer.close(timeout=10)

    assert (report.sent, report.lost) == (6, 0)
    assert _points(batches) == [
        ("loss", 0, 0.5),
        ("acc", 0, 1.0),
        ("loss", 1, 0.25),
        ("acc", 2, 0.75),
        ("lr", 2, 0.01),
        ("loss", 2, 0.125),
    ]
    assert all(len(set(c.times)) <= 3 and len(c.times) == len(c.values) for c in batches)


def test_points_beyond_capacity_are_counted_as_lost() -> None:
    release = threading.Event()
    batches: list[rpc.MetricColumns] = []

    def slow(columns: rpc.MetricColumns) -> None:
        release.wait()
        batches.append(columns)

    # The sender wakes only on close: nothing is taken off the queue while the loop logs.
    buffer = MetricBuffer(slow, batch=1000, interval=3600, capacity=5)
    for step in range(4):
        buffer.add({"loss": 1.0, "acc": 0.5}, step)
    release.set()
    report = buffer.close(timeout=10)

    assert (report.sent, report.lost) == (4, 4)
    assert [step for _, step, _ in _points(batches)] == [0, 0, 1, 1]


def test_a_value_that_is_not_a_number_is_refused_at_once_and_nothing_of_its_call_is_kept() -> None:
    buffer = MetricBuffer(lambda columns: None, interval=0.01)
    buffer.add({"loss": 0.5}, 0)
    with pytest.raises(TypeError, match="real number"):
        buffer.add({"acc": 0.1, "loss": "high"}, 1)  # type: ignore[dict-item]
    assert buffer.close(timeout=10) == BufferReport(sent=1, lost=0)


def test_nan_and_infinite_points_are_sent_as_they_are() -> None:
    """A diverging run logs NaN: the registry keeps it (as MLflow does), so it is sent like any value."""
    batches: list[rpc.MetricColumns] = []
    buffer = MetricBuffer(batches.append, batch=100, interval=3600)
    buffer.add({"loss": float("nan"), "acc": 0.5}, 1)
    buffer.add({"loss": float("inf")}, 2)
    report = buffer.close(timeout=10)
    points = _points(batches)
    assert [(key, step) for key, step, _ in points] == [("loss", 1), ("acc", 1), ("loss", 2)]
    assert points[0][2] != points[0][2]  # NaN
    assert points[1:] == [("acc", 1, 0.5), ("loss", 2, float("inf"))]
    assert (report.sent, report.lost) == (3, 0)
