"""A span per request and a span per batch, the batch's linked to the requests it carried, whether
they came over gRPC or REST; the same spans reach an OTLP receiver as a tree under the caller's."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
import torch
import tritonclient.http as httpclient
from opentelemetry import propagate, trace
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode
from tritonclient.utils import InferenceServerException

from tests.e2e.test_tracing_export import Receiver, receiver  # noqa: F401 - the fixture
from tests.integration.inference.conftest import Platform, Stream
from tests.integration.inference.models import Affine
from tests.integration.inference.test_batching import LONG_DELAY_US, fp32


@pytest.fixture
def exporter() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        provider = TracerProvider()
        trace.set_tracer_provider(provider)
    processor = SimpleSpanProcessor(exporter)
    provider.add_span_processor(processor)
    yield exporter
    processor.shutdown()  # later spans of this process no longer reach it


def named(spans: tuple[ReadableSpan, ...], name: str) -> list[ReadableSpan]:
    return [s for s in spans if s.name == name and (s.attributes or {}).get("inference.model") == "affine"]


def test_the_batch_span_links_the_request_spans_it_carried(
    platform: Platform,
    exporter: InMemorySpanExporter,
    receiver: tuple[Receiver, str],  # noqa: F811
) -> None:
    sink, endpoint = receiver
    provider = trace.get_tracer_provider()
    assert isinstance(provider, TracerProvider)
    otlp = SimpleSpanProcessor(OTLPSpanExporter(endpoint=endpoint, insecure=True))
    provider.add_span_processor(otlp)
    platform.register(Affine(), torch.randn(2, 4), "affine")
    platform.deploy(
        "affine", "affine@latest", batching={"preferred_batch_sizes": [4], "max_queue_delay_us": LONG_DELAY_US}
    )
    x = np.ones((1, 4), dtype=np.float32)
    stream = Stream(platform.triton())
    for request_id in ("g1", "g2"):
        stream.send("affine", [fp32("input", x)], request_id)
    rest = httpclient.InferenceServerClient(url=platform.published().http, concurrency=2)
    tensor = httpclient.InferInput("input", [1, 4], "FP32")
    tensor.set_data_from_numpy(x)
    with trace.get_tracer("test").start_as_current_span("client-root") as root:
        headers: dict[str, str] = {}
        propagate.inject(headers)  # the REST caller's traceparent
        waiting = [rest.async_infer("affine", [tensor], request_id=f"h{i}", headers=headers) for i in (1, 2)]
        results = [w.get_result() for w in waiting]
    assert [r.get_response()["id"] for r in results] == ["h1", "h2"]
    assert sorted(stream.next()[0] for _ in range(2)) == ["g1", "g2"]
    stream.close()
    bad = httpclient.InferInput("input", [1, 3], "FP32")
    bad.set_data_from_numpy(np.ones((1, 3), dtype=np.float32))
    with pytest.raises(InferenceServerException):
        rest.infer("affine", [bad], request_id="bad")
    rest.close()

    spans = exporter.get_finished_spans()
    requests = named(spans, "inference.request")
    batches = named(spans, "inference.batch")
    failed = [s for s in requests if (s.attributes or {})["inference.request_id"] == "bad"]
    assert [s.status.status_code for s in failed] == [StatusCode.ERROR]
    assert "unexpected shape for input 'input'" in str(failed[0].status.description)
    requests = [s for s in requests if s not in failed]
    assert sorted(str((s.attributes or {})["inference.request_id"]) for s in requests) == ["g1", "g2", "h1", "h2"]
    assert len(batches) == 1  # the four requests, two from each protocol, ran as one batch
    batch = batches[0]
    assert batch.parent is None
    assert dict(batch.attributes or {}) == {
        "inference.model": "affine",
        "inference.model_version": "1",
        "inference.batch_size": 4,
        "inference.batch_requests": 4,
    }
    assert sorted(link.context.span_id for link in batch.links) == sorted(
        s.context.span_id for s in requests if s.context is not None
    )
    for span in requests:
        assert (span.attributes or {})["inference.model_version"] == "1"
        assert span.parent is not None  # the gRPC call's span, or the REST caller's
    root_context = root.get_span_context()
    over_rest = [s for s in requests if str((s.attributes or {})["inference.request_id"]).startswith("h")]
    for span in over_rest:
        assert span.context is not None
        assert span.parent is not None
        assert span.context.trace_id == root_context.trace_id
        assert span.parent.span_id == root_context.span_id

    # Over OTLP: the REST requests' spans under the caller's root, the batch's span in its own trace.
    otlp.shutdown()
    trace_id = format(root_context.trace_id, "032x")
    with sink.lock:
        received = {(s.name, s.trace_id, s.span_id, s.parent_id) for s in sink.tree}
    for span in over_rest:
        assert span.context is not None
        identity = (span.name, trace_id, format(span.context.span_id, "016x"), format(root_context.span_id, "016x"))
        assert identity in received
    assert batch.context is not None
    assert ("inference.batch", format(batch.context.trace_id, "032x"), format(batch.context.span_id, "016x"), "") in (
        received
    )
