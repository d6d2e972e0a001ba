"""A job's submission, its start on the agent and its processes share one trace: the scheduler keeps
the caller's trace context, the agent starts the task in a span of it (exported over OTLP), and the
process gets that span as TRACEPARENT. The span tree is asserted whole: the caller's root, the client
span of CreateJob under it, the scheduler's server span under that, the agent's `agent.start_task`
(received over OTLP from the agent's own process) under the scheduler's span, and the job's process
under the agent's span."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from atelier.runtime.tracing import configure_tracing
from atelier.scheduler.v1 import resources_pb2 as pb
from tests.e2e.test_tracing_export import Receiver, receiver  # noqa: F401 - the fixture
from tests.integration.scheduler.conftest import Cluster

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
SHOW = "import os; print('TRACEPARENT=' + os.environ.get('TRACEPARENT', ''))"
SUBMIT = "/atelier.scheduler.v1.SchedulerService/CreateJob"


@pytest.fixture
def local_spans() -> Iterator[InMemorySpanExporter]:
    """This process's spans (the test's and the in-process scheduler's)."""
    configure_tracing("test-client")  # sets the global provider unless an earlier test of this process did
    provider = trace.get_tracer_provider()
    assert isinstance(provider, TracerProvider)
    exporter = InMemorySpanExporter()
    processor = SimpleSpanProcessor(exporter)
    provider.add_span_processor(processor)
    yield exporter
    processor.shutdown()


def test_a_job_continues_the_trace_of_its_submission(
    cluster: Cluster,
    start_agent: Callable[..., object],
    receiver: tuple[Receiver, str],  # noqa: F811
    local_spans: InMemorySpanExporter,
) -> None:
    sink, endpoint = receiver
    start_agent(
        "traced",
        "T4",
        otel_exporter_otlp_endpoint=endpoint,
        otel_exporter_otlp_insecure="true",
        otel_bsp_schedule_delay="100",
    )
    with trace.get_tracer("test").start_as_current_span("researcher submits") as root:
        job = cluster.client.submit(
            "lab",
            pb.Job(
                command=[sys.executable, "-c", SHOW],
                launcher=pb.LAUNCHER_COMMAND,
                resources=pb.Resources(gpus_per_node=1),
            ),
            "traced",
        )
        trace_id = format(root.get_span_context().trace_id, "032x")
    done = cluster.wait_for(job.name, (pb.JOB_STATE_SUCCEEDED, pb.JOB_STATE_FAILED))
    assert done.state == pb.JOB_STATE_SUCCEEDED
    lines = [line.text for page in cluster.client.logs(job.name, follow=True) for line in page.lines]
    found = [t for t in lines if t.startswith("TRACEPARENT=")]
    assert found, lines
    traceparent = found[0].removeprefix("TRACEPARENT=")
    version, process_trace, parent_span, _flags = traceparent.split("-")
    assert (version, process_trace) == ("00", trace_id)  # the job's processes are in the submitter's trace

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with sink.lock:
            started = [s for s in sink.spans if s[1] == "agent.start_task"]
        if started:
            break
        time.sleep(0.1)
    assert started == [("atelier-agent", "agent.start_task", trace_id)]
    assert parent_span != format(root.get_span_context().span_id, "016x")  # the agent's span is in between

    local = [s for s in local_spans.get_finished_spans() if s.context.trace_id == int(trace_id, 16)]
    client = [s for s in local if s.name == SUBMIT and s.kind == trace.SpanKind.CLIENT]
    server = [s for s in local if s.name == SUBMIT and s.kind == trace.SpanKind.SERVER]
    assert len(client) == len(server) == 1, [(s.name, s.kind) for s in local]
    assert client[0].parent is not None
    assert client[0].parent.span_id == root.get_span_context().span_id
    assert server[0].parent is not None
    assert server[0].parent.span_id == client[0].context.span_id
    with sink.lock:
        (agent,) = [s for s in sink.tree if s.name == "agent.start_task" and s.trace_id == trace_id]
    assert agent.parent_id == format(server[0].context.span_id, "016x")  # the scheduler kept its own span
    assert parent_span == agent.span_id  # and the job's processes run under the agent's span
