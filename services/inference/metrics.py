"""The inference service's Prometheus series, with Triton's names and meanings.

Every series is read at scrape time from the same per-version `ModelStatistics` that the
ModelStatistics RPC reports, so the two always agree. Labels are `model` (the deployment id, the
name Triton clients use) and `version` (the registry version number).

Triton's counters carry no `_total` suffix (`nv_inference_request_success`, not
`..._success_total`), and dashboards and alert rules written for Triton query those exact names.
prometheus_client's text exposition appends `_total` to every counter family, so these families
are published as gauges whose values only grow (what the agents' DCGM names do too); `rate()` and
`increase()` work on them alike. The batch-size histogram is Atelier's own and a real histogram.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from services.inference.repository import ModelRepository
from services.inference.statistics import FAILURE_REASONS, StatsSnapshot

BATCH_SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
"""Upper bounds of the batch-size histogram (samples per model execution)."""

LABELS = ["model", "version"]

_COUNTS = (
    ("nv_inference_request_success", "Number of successful inference requests, all batch sizes."),
    ("nv_inference_count", "Number of inferences performed (a batch of n samples counts n)."),
    ("nv_inference_exec_count", "Number of model executions (batches) performed."),
)
_DURATIONS = (
    ("nv_inference_request_duration_us", "Cumulative inference request duration of successful requests, us."),
    ("nv_inference_queue_duration_us", "Cumulative time successful requests waited in the queue, us."),
    ("nv_inference_compute_input_duration_us", "Cumulative compute input duration (batch assembly), us."),
    ("nv_inference_compute_infer_duration_us", "Cumulative compute infer duration (the model's run), us."),
    ("nv_inference_compute_output_duration_us", "Cumulative compute output duration (splitting, encoding), us."),
)


def _counts(s: StatsSnapshot) -> tuple[int, ...]:
    return (s.success.count, s.inference_count, s.execution_count)


def _durations_us(s: StatsSnapshot) -> tuple[int, ...]:
    stages = (s.success, s.queue, s.compute_input, s.compute_infer, s.compute_output)
    return tuple(d.ns // 1000 for d in stages)


def batch_size_buckets(executions: dict[int, int]) -> list[tuple[str, float]]:
    """Cumulative histogram buckets from the number of executions of each batch size."""
    buckets: list[tuple[str, float]] = []
    for bound in BATCH_SIZE_BUCKETS:
        buckets.append((str(float(bound)), float(sum(n for size, n in executions.items() if size <= bound))))
    buckets.append(("+Inf", float(sum(executions.values()))))
    return buckets


class InferenceCollector(Collector):
    """Triton's per-model series and the batch-size histogram of every version with statistics."""

    def __init__(self, repository: ModelRepository) -> None:
        self.repository = repository

    def collect(self) -> Iterator[Metric]:
        counts = [GaugeMetricFamily(name, doc, labels=LABELS) for name, doc in _COUNTS]
        durations = [GaugeMetricFamily(name, doc, labels=LABELS) for name, doc in _DURATIONS]
        failure = GaugeMetricFamily(
            "nv_inference_request_failure",
            "Number of failed inference requests, by reason (REJECTED, CANCELED, BACKEND, OTHER).",
            labels=[*LABELS, "reason"],
        )
        pending = GaugeMetricFamily(
            "nv_inference_pending_request_count", "Requests queued, waiting for a model instance.", labels=LABELS
        )
        batch_size = HistogramMetricFamily(
            "atelier_inference_batch_size", "Samples per model execution.", labels=LABELS
        )
        queued = {(s.deployment_id, s.version): s.batcher.queued for s in self.repository.served()}
        for name, number, statistics in self.repository.statistics():
            labels = [name, str(number)]
            snapshot = statistics.snapshot()
            for family, count in zip(counts, _counts(snapshot), strict=True):
                family.add_metric(labels, count)
            for family, us in zip(durations, _durations_us(snapshot), strict=True):
                family.add_metric(labels, us)
            for reason in FAILURE_REASONS:
                failure.add_metric([*labels, reason], snapshot.failures[reason])
            pending.add_metric(labels, queued.get((name, number), 0))
            executions = {size: b.compute_infer.count for size, b in snapshot.batches.items()}
            samples = sum(size * n for size, n in executions.items())
            batch_size.add_metric(labels, batch_size_buckets(executions), float(samples))
        yield from counts
        yield failure
        yield pending
        yield from durations
        yield batch_size
