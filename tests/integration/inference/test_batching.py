"""The dynamic batcher as clients see it: priorities, timeouts, a full queue, callers that leave,
and requests that fail alone. Every batching deployment here waits far longer than a test runs for
a batch to fill, so what runs when is decided by sizes, priorities and shapes, never by timing."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import pytest
import torch
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from atelier.registry.v1 import resources_pb2 as registry_pb
from tests.integration.inference.conftest import Platform, Stream, register_scripted
from tests.integration.inference.models import Affine, Doubler, Picky

LONG_DELAY_US = 120_000_000


def fp32(name: str, x: np.ndarray[Any, Any]) -> grpcclient.InferInput:
    tensor = grpcclient.InferInput(name, list(x.shape), "FP32")
    tensor.set_data_from_numpy(x)
    return tensor


def signature(width: int) -> registry_pb.ModelSignature:
    fp = registry_pb.TENSOR_DATATYPE_FP32
    return registry_pb.ModelSignature(
        inputs=[registry_pb.TensorSpec(name="x", datatype=fp, shape=[-1, width])],
        outputs=[registry_pb.TensorSpec(name="y", datatype=fp, shape=[-1, width])],
    )


def wait_for_failures(client: Any, model: str, count: int) -> None:
    for _ in range(600):
        if client.get_inference_statistics(model).model_stats[0].inference_stats.fail.count >= count:
            return
        time.sleep(0.05)
    raise AssertionError(f"{model}: the server never counted {count} failed requests")


def test_priority_level_one_is_served_first(platform: Platform) -> None:
    register_scripted(platform, Doubler(), "doubler", signature(-1))
    platform.deploy(
        "doubler",
        "doubler@latest",
        batching={"max_batch_size": 4, "max_queue_delay_us": LONG_DELAY_US, "priority_levels": 2},
    )
    stream = Stream(platform.triton())
    low = np.ones((1, 2), dtype=np.float32)
    stream.send("doubler", [fp32("x", low)], "low", priority=2)
    # A different width cannot join the waiting low-priority request: served in FIFO order the
    # low one would go first (alone); with strict priority the high one goes first.
    high = np.full((1, 3), 5.0, dtype=np.float32)
    stream.send("doubler", [fp32("x", high)], "high", priority=1)
    request_id, result, error = stream.next()
    assert error is None
    assert request_id == "high"
    np.testing.assert_array_equal(result.as_numpy("y"), high * 2)
    assert not stream.pending()  # the low one still waits for its batch to fill
    stream.send("doubler", [fp32("x", np.full((3, 2), 2.0, dtype=np.float32))], "low-fill", priority=2)
    answered = {stream.next()[0], stream.next()[0]}
    assert answered == {"low", "low-fill"}
    stream.close()
    stats = platform.triton().get_inference_statistics("doubler").model_stats[0]
    assert (stats.inference_count, stats.execution_count) == (5, 2)


def test_a_request_that_times_out_in_the_queue_never_runs(platform: Platform) -> None:
    platform.register(Affine(), torch.randn(2, 4), "affine")
    deployment = platform.deploy("affine", "affine@latest", batching={"max_queue_delay_us": LONG_DELAY_US})
    client = platform.triton()
    x = np.ones((1, 4), dtype=np.float32)
    with pytest.raises(InferenceServerException) as timed_out:
        client.infer("affine", [fp32("input", x)], timeout=200_000)  # the `timeout` parameter, in us
    assert timed_out.value.status() == "StatusCode.DEADLINE_EXCEEDED"
    assert timed_out.value.message() == "Request timeout expired"
    # The queue policy's default timeout applies to requests that give none.
    deployment.queue.default_timeout_us = 200_000
    platform.inference.update(deployment, ["queue"])
    platform.inference.wait_settled(deployment.name)
    with pytest.raises(InferenceServerException) as by_default:
        client.infer("affine", [fp32("input", x)])
    assert by_default.value.status() == "StatusCode.DEADLINE_EXCEEDED"
    stats = client.get_inference_statistics("affine").model_stats[0]
    assert (stats.execution_count, stats.inference_stats.fail.count) == (0, 2)


def test_a_full_queue_refuses_with_unavailable(platform: Platform) -> None:
    platform.register(Affine(), torch.randn(2, 4), "affine")
    platform.deploy(
        "affine", "affine@latest", batching={"max_queue_delay_us": LONG_DELAY_US}, queue={"max_queue_size": 2}
    )
    client = platform.triton()
    stream = Stream(platform.triton())
    x = np.ones((1, 4), dtype=np.float32)
    for name in ("a", "b", "c"):  # a stream's requests reach the queue in order
        stream.send("affine", [fp32("input", x)], name)
    _, _, error = stream.next()
    assert error is not None
    assert "Exceeds maximum queue size" in error.message()
    with pytest.raises(InferenceServerException) as refused:
        client.infer("affine", [fp32("input", x)])
    assert refused.value.status() == "StatusCode.UNAVAILABLE"
    assert refused.value.message() == "Exceeds maximum queue size"
    # Deleting the deployment fails the two waiting requests instead of leaving them hanging.
    platform.inference.delete("projects/lab/deployments/affine")
    errors = [stream.next()[2] for _ in range(2)]
    assert all(e is not None and "unloaded" in e.message() for e in errors)
    stream.close()


def test_a_request_whose_caller_left_never_reaches_the_model(platform: Platform) -> None:
    platform.register(Affine(), torch.randn(2, 4), "affine")
    platform.deploy("affine", "affine@latest", batching={"max_batch_size": 4, "max_queue_delay_us": LONG_DELAY_US})
    client = platform.triton()
    x = np.ones((1, 4), dtype=np.float32)
    with pytest.raises(InferenceServerException) as gone:
        client.infer("affine", [fp32("input", x)], client_timeout=2.0)
    assert gone.value.status() == "StatusCode.DEADLINE_EXCEEDED"
    wait_for_failures(client, "affine", 1)
    # Four new requests fill a batch of four by themselves: the abandoned one is not among them.
    stream = Stream(platform.triton())
    for index in range(4):
        stream.send("affine", [fp32("input", x * index)], str(index))
    assert sorted(stream.next()[0] for _ in range(4)) == ["0", "1", "2", "3"]
    stream.close()
    stats = client.get_inference_statistics("affine").model_stats[0]
    assert (stats.inference_count, stats.execution_count) == (4, 1)


def test_a_request_that_breaks_its_batch_fails_alone(platform: Platform) -> None:
    register_scripted(platform, Picky(), "picky", signature(2))
    platform.deploy(
        "picky", "picky@latest", batching={"preferred_batch_sizes": [4], "max_queue_delay_us": LONG_DELAY_US}
    )
    stream = Stream(platform.triton())
    values = {"0": 1.0, "1": 2.0, "bad": -1.0, "3": 3.0}
    for request_id, value in values.items():
        stream.send("picky", [fp32("x", np.full((1, 2), value, dtype=np.float32))], request_id)
    outcomes = [stream.next() for _ in values]
    stream.close()
    good = {request_id: result.as_numpy("y") for request_id, result, error in outcomes if error is None}
    failed = [error for _, _, error in outcomes if error is not None]
    assert sorted(good) == ["0", "1", "3"]
    for request_id, output in good.items():
        np.testing.assert_array_equal(output, np.full((1, 2), values[request_id] + 1, dtype=np.float32))
    assert len(failed) == 1
    assert "negative input" in failed[0].message()
