"""Triton's Prometheus series, scraped from the service's /metrics after real tritonclient traffic,
and equal to what ModelStatistics reports."""

from __future__ import annotations

import numpy as np
import pytest
from tritonclient.utils import InferenceServerException

from tests.integration.inference.conftest import Platform, Stream, register_scripted
from tests.integration.inference.models import Picky
from tests.integration.inference.test_batching import LONG_DELAY_US, fp32, signature, wait_for_failures
from tests.prometheus import Samples, scrape, value


def wait_for_pending(address: str, count: int) -> Samples:
    for _ in range(600):
        samples = scrape(address)
        if value(samples, "nv_inference_pending_request_count", model="picky") >= count:
            return samples
    raise AssertionError(f"the scrape never showed {count} pending requests")


def test_triton_series_count_batches_failures_by_reason_and_agree_with_statistics(platform: Platform) -> None:
    version = register_scripted(platform, Picky(), "picky", signature(2))
    platform.deploy(
        "picky", "picky@latest", batching={"preferred_batch_sizes": [4], "max_queue_delay_us": LONG_DELAY_US}
    )
    metrics = platform.published().metrics
    labels = {"model": "picky", "version": str(version.number)}
    client = platform.triton()
    stream = Stream(platform.triton())
    one = np.ones((1, 2), dtype=np.float32)
    # One request waits for its batch (the queue delay is far longer than the test): pending.
    stream.send("picky", [fp32("x", one)], "0")
    assert value(wait_for_pending(metrics, 1), "nv_inference_pending_request_count", **labels) == 1
    for request_id in ("1", "2", "3"):
        stream.send("picky", [fp32("x", one)], request_id)
    assert sorted(stream.next()[0] for _ in range(4)) == ["0", "1", "2", "3"]  # one batch of four
    # A batch that the model refuses runs again request by request: one BACKEND failure.
    for request_id, sign in (("4", 1.0), ("bad", -1.0), ("6", 1.0), ("7", 1.0)):
        stream.send("picky", [fp32("x", one * sign)], request_id)
    outcomes = [stream.next() for _ in range(4)]
    assert sum(error is not None for _, _, error in outcomes) == 1
    stream.close()
    with pytest.raises(InferenceServerException):  # invalid input: OTHER
        client.infer("picky", [fp32("x", np.ones((1, 3), dtype=np.float32))])
    with pytest.raises(InferenceServerException):  # timed out in the queue: REJECTED
        client.infer("picky", [fp32("x", one)], timeout=200_000)
    with pytest.raises(InferenceServerException):  # the caller left: CANCELED
        client.infer("picky", [fp32("x", one)], client_timeout=1.0)
    wait_for_failures(client, "picky", 4)

    samples = scrape(metrics)
    stats = client.get_inference_statistics("picky").model_stats[0]
    assert value(samples, "nv_inference_request_success", **labels) == 7 == stats.inference_stats.success.count
    assert value(samples, "nv_inference_count", **labels) == 7 == stats.inference_count
    assert value(samples, "nv_inference_exec_count", **labels) == 4 == stats.execution_count
    for reason in ("REJECTED", "CANCELED", "BACKEND", "OTHER"):
        assert value(samples, "nv_inference_request_failure", reason=reason, **labels) == 1, reason
    assert value(samples, "nv_inference_request_failure", **labels) == stats.inference_stats.fail.count
    assert value(samples, "nv_inference_pending_request_count", **labels) == 0
    stages = {
        "nv_inference_request_duration_us": stats.inference_stats.success,
        "nv_inference_queue_duration_us": stats.inference_stats.queue,
        "nv_inference_compute_input_duration_us": stats.inference_stats.compute_input,
        "nv_inference_compute_infer_duration_us": stats.inference_stats.compute_infer,
        "nv_inference_compute_output_duration_us": stats.inference_stats.compute_output,
    }
    for name, duration in stages.items():
        assert value(samples, name, **labels) == duration.ns // 1000, name
    assert value(samples, "nv_inference_request_duration_us", **labels) > 0
    # Exactly Triton's names: no `_total` suffix on the counters.
    assert not [name for name in samples if name.startswith("nv_") and name.endswith("_total")]
    # Batch sizes: three executions of one sample, one of four.
    assert value(samples, "atelier_inference_batch_size_bucket", le="1.0", **labels) == 3
    assert value(samples, "atelier_inference_batch_size_bucket", le="2.0", **labels) == 3
    assert value(samples, "atelier_inference_batch_size_bucket", le="4.0", **labels) == 4
    assert value(samples, "atelier_inference_batch_size_count", **labels) == 4
    assert value(samples, "atelier_inference_batch_size_sum", **labels) == 7
    client.close()
