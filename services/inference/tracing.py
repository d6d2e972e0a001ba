"""OpenTelemetry spans of inference: one per request and one per batch.

A request's span (`inference.request`) is a child of whatever carried it (the gRPC call's SERVER
span, or the trace a REST caller sent in `traceparent`) and lasts from validation to the response:
queueing included. A batch's span (`inference.batch`) covers one model execution on an instance
thread; it starts a trace of its own and links to the span of every request it carried (a batch
has many parents, which is what span links are for). A batch that fails and runs again request by
request gives one span per run, each linked to what it carried.

While the tracer provider has no span processor (no exporter configured), nothing would read a
span, so none are made: the request span is then the caller's current span, unchanged.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from opentelemetry import context as otel_context
from opentelemetry import trace

TRACER = "atelier.inference"


def _recording(provider: trace.TracerProvider) -> bool:
    """False only for the SDK's provider without span processors (nothing would read a span)."""
    processors = getattr(getattr(provider, "_active_span_processor", None), "_span_processors", None)
    return not isinstance(processors, tuple) or bool(processors)


class InferenceSpans:
    """Makes the request and batch spans, from `provider` (the global tracer provider unless given)."""

    def __init__(self, provider: trace.TracerProvider | None = None) -> None:
        self.provider = provider
        self.tracer = trace.get_tracer(TRACER, tracer_provider=provider)

    def recording(self) -> bool:
        return _recording(self.provider or trace.get_tracer_provider())

    @contextmanager
    def request(self, model: str, version: str, request_id: str) -> Iterator[trace.Span]:
        """The current span for one request; an exception raised inside marks it failed."""
        if not self.recording():
            yield trace.get_current_span()
            return
        attributes = {"inference.model": model, "inference.request_id": request_id}
        if version:
            attributes["inference.model_version"] = version
        with self.tracer.start_as_current_span("inference.request", attributes=attributes) as span:
            yield span

    @contextmanager
    def batch(
        self, model: str, version: int, samples: int, carried: Sequence[trace.SpanContext | None]
    ) -> Iterator[trace.Span]:
        """The span of one model execution, linked to the requests it carried."""
        if not self.recording():
            yield trace.INVALID_SPAN
            return
        links = [trace.Link(c) for c in carried if c is not None and c.is_valid]
        attributes: dict[str, str | int] = {
            "inference.model": model,
            "inference.model_version": str(version),
            "inference.batch_size": samples,
            "inference.batch_requests": len(carried),
        }
        # A root: a batch belongs to no single request's trace.
        with self.tracer.start_as_current_span(
            "inference.batch", context=otel_context.Context(), links=links, attributes=attributes
        ) as span:
            yield span
