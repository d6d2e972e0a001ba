"""Inference's drift sampler: a full queue drops (and counts) instead of waiting, an unreachable monitor
costs samples and not requests, and rows reach the monitor's wire form as the monitor expects them."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, cast

import numpy as np
import numpy.typing as npt
import pytest
from prometheus_client import CollectorRegistry

from atelier.errors import Unavailable
from atelier.monitor.v1 import monitor_service_pb2 as monitor_pb
from services.inference.queues import OutputTensor
from services.inference.repository import Served
from services.inference.sample_rows import SampledRows
from services.inference.sampling import DriftSampler, SamplingSettings, to_message
from services.inference.signature import Signature, TensorSpec
from services.inference.spec import DeploymentSpec
from services.inference.statistics import ModelStatistics
from services.inference.tensors import datatype

FP32 = datatype("FP32")


def served(deployment: str = "digits", inputs: int = 4, outputs: int = 3, names: tuple[str, ...] = ("x",)) -> Served:
    signature = Signature(
        inputs=tuple(TensorSpec(name, FP32, (-1, inputs)) for name in names),
        outputs=(TensorSpec("logits", FP32, (-1, outputs)),),
    )
    return Served(
        deployment_id=deployment,
        project="lab",
        version=2,
        version_name=f"projects/lab/models/{deployment}/versions/v2",
        format="torchscript",
        signature=signature,
        spec=DeploymentSpec(),
        batcher=cast(Any, None),  # the sampler never touches the batcher
        statistics=ModelStatistics(),
    )


def output(values: npt.NDArray[np.float32]) -> OutputTensor:
    return OutputTensor(TensorSpec("logits", FP32, (-1, values.shape[1])), values.shape, values.tobytes())


def unreachable() -> str:
    raise Unavailable("no address for the monitor service: run `atelier up` or set ATELIER_MONITOR_ADDRESS")


def dropped(registry: CollectorRegistry, reason: str) -> float:
    value = registry.get_sample_value("atelier_inference_drift_samples_dropped_total", {"reason": reason})
    return value or 0.0


def test_a_full_queue_drops_and_counts_the_rows_instead_of_waiting() -> None:
    registry = CollectorRegistry()
    sampler = DriftSampler(unreachable, SamplingSettings(queue_size=2, flush_seconds=60), registry)
    model = served()

    async def serve() -> None:
        for _ in range(5):
            sampler.offer(model, [np.zeros((3, 4), np.float32)], [output(np.zeros((3, 3), np.float32))])

    asyncio.run(serve())
    assert dropped(registry, "queue_full") == 9  # three requests of three rows found the queue full


def test_an_unreachable_monitor_costs_the_samples_and_counts_them() -> None:
    registry = CollectorRegistry()
    sampler = DriftSampler(unreachable, SamplingSettings(flush_seconds=0.05), registry)
    model = served()

    async def serve() -> None:
        for _ in range(4):
            sampler.offer(model, [np.ones((2, 4), np.float32)], [output(np.ones((2, 3), np.float32))])
        await sampler.close()

    asyncio.run(serve())
    assert dropped(registry, "send_failed") == 8
    assert dropped(registry, "queue_full") == 0


def test_only_the_chosen_share_of_requests_is_sampled() -> None:
    registry = CollectorRegistry()
    draws = iter([0.05, 0.5, 0.09, 0.95])
    settings = SamplingSettings(rate=0.1, queue_size=1, flush_seconds=60)
    sampler = DriftSampler(unreachable, settings, registry, chance=lambda: next(draws))
    model = served()

    async def serve() -> None:
        for _ in range(4):
            sampler.offer(model, [np.ones((1, 4), np.float32)], [output(np.ones((1, 3), np.float32))])

    asyncio.run(serve())
    assert dropped(registry, "queue_full") == 1  # draws 0.05 and 0.09 are sampled; the second finds it full


def test_wide_inputs_are_not_sampled() -> None:
    registry = CollectorRegistry()
    sampler = DriftSampler(unreachable, SamplingSettings(queue_size=1, max_features=16), registry)
    model = served(inputs=32)
    for _ in range(3):  # refused before anything is queued (or a sender started)
        sampler.offer(model, [np.ones((1, 32), np.float32)], [output(np.ones((1, 3), np.float32))])
    assert dropped(registry, "queue_full") == 0


class Recording(DriftSampler):
    """Keeps what it would send, and what it was asked to send, instead of calling a monitor."""

    def __init__(self, settings: SamplingSettings) -> None:
        super().__init__(unreachable, settings, CollectorRegistry())
        self.messages: list[monitor_pb.DriftSamples] = []
        self.calls: list[int] = []
        self.during_send: Callable[[], None] = lambda: None

    async def _send(self, queued: SampledRows, start: int, end: int) -> None:
        self.messages.append(to_message(queued, start, end))
        self.calls.append(end - start)
        self.during_send()


def test_rows_become_flattened_features_and_argmax_or_value_predictions() -> None:
    logits = np.array([[0.1, 0.7, 0.2], [0.9, 0.0, 0.1]], np.float32)
    images = np.arange(16, dtype=np.float32).reshape(2, 1, 2, 4)
    a, b = served("a", inputs=8), served("b", outputs=1, names=("u", "v"))
    sampler = Recording(SamplingSettings(flush_seconds=60))

    async def serve() -> None:
        sampler.offer(a, [images], [output(logits)])
        sampler.offer(b, [np.ones((1, 1)), np.array([[2.0, 3.0]])], [output(np.array([[0.25]], np.float32))])
        sampler.offer(a, [images[:1] + 100], [output(logits[1:])])
        await sampler.flush()

    asyncio.run(serve())
    first, second = sampler.messages
    assert first.deployment == "projects/lab/deployments/a"
    assert first.model_version == "projects/lab/models/a/versions/v2"
    assert first.feature_names == [f"x[{i}]" for i in range(8)]
    assert list(first.features) == list(range(16)) + list(range(100, 108))
    assert list(first.predictions) == [1.0, 0.0, 0.0]
    assert second.deployment == "projects/lab/deployments/b"
    assert second.feature_names == ["u[0]", "v[0]", "v[1]"]
    assert list(second.features) == [1.0, 2.0, 3.0]
    assert list(second.predictions) == [pytest.approx(0.25)]


def test_rows_are_copied_in_row_order_whatever_the_arrays_layout_and_type() -> None:
    model = served("m", inputs=2, names=("u", "v"))
    sampler = Recording(SamplingSettings(flush_seconds=60, batch_rows=2))
    columns = np.array([[1.0, 3.0, 5.0], [2.0, 4.0, 6.0]])  # its transpose is the rows, not contiguous
    counts = np.array([[7, 8], [9, 10], [11, 12]], np.int32)
    logits = np.array([[0, 1, 0], [1, 0, 0], [0, 0, 1]], np.float32)

    async def serve() -> None:
        sampler.offer(model, [columns.T, counts], [output(logits)])
        counts[:] = 0  # a request's arrays may be reused once it is answered: its rows were copied
        await sampler.flush()

    asyncio.run(serve())
    first, second = sampler.messages
    assert list(first.features) == [1.0, 2.0, 7.0, 8.0, 3.0, 4.0, 9.0, 10.0]
    assert list(second.features) == [5.0, 6.0, 11.0, 12.0]
    assert [list(first.predictions), list(second.predictions)] == [[1.0, 0.0], [2.0]]


def test_rows_of_another_width_than_the_latest_are_left_out() -> None:
    model = served(inputs=-1)
    sampler = Recording(SamplingSettings(flush_seconds=60))

    async def serve() -> None:
        sampler.offer(model, [np.ones((1, 2), np.float32)], [output(np.zeros((1, 3), np.float32))])
        sampler.offer(model, [np.full((1, 3), 2, np.float32)], [output(np.zeros((1, 3), np.float32))])
        await sampler.flush()

    asyncio.run(serve())
    [message] = sampler.messages
    assert message.feature_names == ["x[0]", "x[1]", "x[2]"]
    assert list(message.features) == [2.0, 2.0, 2.0]


def test_a_flush_sends_what_was_queued_and_leaves_what_comes_meanwhile_for_the_next() -> None:
    model = served()
    sampler = Recording(SamplingSettings(flush_seconds=60, batch_rows=2))

    def request() -> None:
        sampler.offer(model, [np.ones((1, 4), np.float32)], [output(np.ones((1, 3), np.float32))])

    sampler.during_send = request  # served while the call is out

    async def serve() -> None:
        for _ in range(3):
            request()
        await sampler.flush()
        assert sampler.calls == [2, 1]  # at most batch_rows rows a call, none for the rows that came meanwhile
        sampler.during_send = lambda: None
        await sampler.flush()

    asyncio.run(serve())
    assert sampler.calls == [2, 1, 2]


def test_the_queue_holds_copies_not_the_requests_arrays() -> None:
    model = served()
    sampler = Recording(SamplingSettings(flush_seconds=60))
    row = np.ones((1, 4), np.float32)

    async def serve() -> None:
        for _ in range(300):  # beyond the first allocation: the rows grow
            sampler.offer(model, [row], [output(np.ones((1, 3), np.float32))])
        row[:] = 7  # the request's buffer reused after it was answered
        await sampler.flush()

    asyncio.run(serve())
    [message] = sampler.messages
    assert len(message.predictions) == 300
    assert set(message.features) == {1.0}
