"""The gRPC front door: generated stubs and the SDK call every service through one address."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import CollectorRegistry

from atelier.client import DataClient
from atelier.data.v1 import data_service_pb2 as data_rpc
from atelier.data.v1 import data_service_pb2_grpc as data_grpc
from atelier.data.v1 import resources_pb2 as data_pb
from atelier.errors import NotFound, Unavailable, from_rpc_error
from atelier.inference.protocol import grpc_service_pb2 as v2
from atelier.inference.protocol import grpc_service_pb2_grpc as v2_grpc
from atelier.runtime.metrics import RpcMetrics
from atelier.scheduler.v1 import scheduler_service_pb2 as scheduler_rpc
from atelier.scheduler.v1 import scheduler_service_pb2_grpc as scheduler_grpc
from gateway.frontdoor import LocalService
from tests.integration.gateway.conftest import OpenDoor, Stack
from tests.integration.gateway.frontdoor_helpers import RecordingScheduler
from tests.integration.gateway.test_rest import push_digits

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER_TRACEPARENT = f"00-{TRACE_ID}-00f067aa0ba902b7-01"


def metadata_of(metadata: Any) -> dict[str, Any]:
    """Call metadata as a mapping (values: str, or bytes for `-bin` keys)."""
    return dict(metadata)


def data_stub(address: str) -> tuple[grpc.Channel, data_grpc.DataServiceStub]:
    channel = grpc.insecure_channel(address)
    return channel, data_grpc.DataServiceStub(channel)


def test_a_unary_call_reaches_the_service_with_request_id_and_trace(
    door: str, stack: Stack, spans: InMemorySpanExporter, proxy: str
) -> None:
    channel, stub = data_stub(door)
    with channel:
        created, call = stub.CreateProject.with_call(
            data_rpc.CreateProjectRequest(project_id="vision", project=data_pb.Project(description="cats")),
            metadata=(("traceparent", CALLER_TRACEPARENT), ("x-request-id", "req-42")),
            timeout=10,
        )
        fetched = stub.GetProject(data_rpc.GetProjectRequest(name="projects/vision"), timeout=10)
    assert created.name == fetched.name == "projects/vision"
    assert stack.data.get_project("projects/vision").description == "cats"  # the service itself has it
    headers = metadata_of(call.initial_metadata())
    assert headers["x-request-id"] == "req-42"
    assert headers["traceparent"].split("-")[1] == TRACE_ID  # the caller's trace goes on
    if proxy == "python":  # nginx: in the headers of an answer, the trailers of an error (below)
        assert metadata_of(call.trailing_metadata())["x-request-id"] == "req-42"
    server_spans = [s for s in spans.get_finished_spans() if s.name.endswith("CreateProject")]
    assert server_spans
    assert {format(s.context.trace_id, "032x") for s in server_spans} == {TRACE_ID}


def test_a_call_without_a_request_id_gets_one(door: str) -> None:
    channel, stub = data_stub(door)
    with channel:
        _, call = stub.ListProjects.with_call(data_rpc.ListProjectsRequest(), timeout=10)
    assert len(metadata_of(call.initial_metadata())["x-request-id"]) == 32


def test_the_sdk_pushes_and_reads_a_dataset_through_the_front_door(door: str, stack: Stack, tmp_path: Path) -> None:
    """UploadChunks streams from the client, ReadFile and ReadChunks stream from the service."""
    client = DataClient.at(door)
    try:
        stack.data.ensure_project("lab")
        version = push_digits(Stack(stack.rest, client, stack.registry, stack.scheduler, stack.agents, {}), tmp_path)
        assert stack.data.get_version(version.name).file_count == 2  # written through the door
        assert b"".join(client.read_file(version.name, "labels.csv")) == b"a,1\n"
        files = list(client.list_files(version.name, full=True))
        digests = [chunk.digest for entry in files for chunk in entry.chunks]
        read = list(client.read_chunks(version.name, list(digests)))
    finally:
        client.close()
    assert sorted(c.data for c in read) == sorted([b"a,1\n", b"\x89PNG"])


def test_a_bidi_stream_goes_both_ways(serve: Any, stack: Stack, open_door: OpenDoor, tmp_path: Path) -> None:
    from tests.integration.inference.conftest import start_inference

    inference = start_inference(serve, tmp_path / "home", stack.addresses["data"], stack.addresses["registry"])
    door = open_door({**stack.addresses, "inference": inference})
    with grpc.insecure_channel(door) as channel:
        stub = v2_grpc.GRPCInferenceServiceStub(channel)
        assert stub.ServerLive(v2.ServerLiveRequest(), timeout=10).live
        requests = [v2.ModelInferRequest(model_name=f"missing-{i}", id=str(i)) for i in range(3)]
        answers = list(stub.ModelStreamInfer(iter(requests), timeout=30))
    assert sorted(a.infer_response.id for a in answers) == ["0", "1", "2"]
    assert all(f"missing-{a.infer_response.id}" in a.error_message for a in answers)


def test_errors_keep_their_status_details(door: str, stack: Stack) -> None:
    request = data_rpc.GetProjectRequest(name="projects/nowhere")
    failures = []
    for address in (door, stack.addresses["data"]):
        channel, stub = data_stub(address)
        with channel, pytest.raises(grpc.RpcError) as failed:
            stub.GetProject(request, timeout=10)
        failures.append(failed.value)
    through, direct = failures
    assert through.code() == direct.code() == grpc.StatusCode.NOT_FOUND  # type: ignore[attr-defined]
    assert through.details() == direct.details()  # type: ignore[attr-defined]
    details = [metadata_of(e.trailing_metadata())["grpc-status-details-bin"] for e in failures]  # type: ignore[attr-defined]
    assert details[0] == details[1]
    assert len(metadata_of(through.trailing_metadata())["x-request-id"]) == 32  # type: ignore[attr-defined]
    error = from_rpc_error(through)
    assert isinstance(error, NotFound)
    assert error.reason_name == "NOT_FOUND"


def test_the_deadline_and_metadata_reach_the_service(
    serve: Any, stack: Stack, open_door: OpenDoor, spans: InMemorySpanExporter, proxy: str
) -> None:
    # `spans` makes sure a recording tracer provider exists whatever ran before in this process: without
    # one the front door's span would not record, and the caller's span would be the service's parent.
    scheduler = RecordingScheduler()
    serve(lambda: scheduler)
    door = open_door({**stack.addresses, "scheduler": scheduler.address})
    with grpc.insecure_channel(door) as channel:
        stub = scheduler_grpc.SchedulerServiceStub(channel)
        job = stub.GetJob(
            scheduler_rpc.GetJobRequest(name="projects/lab/jobs/7"),
            timeout=7,
            metadata=(("authorization", "Bearer abc"), ("x-team", "vision"), ("traceparent", CALLER_TRACEPARENT)),
        )
    assert job.name == "projects/lab/jobs/7"
    (seen,) = scheduler.seen
    assert seen.time_remaining is not None
    # The caller's 7 s reach the service, less the time spent on the way; gRPC rounds a timeout up when
    # it puts it on the wire (twice here: caller -> front door -> service), so allow a little above.
    assert 0 < seen.time_remaining < 7.5
    assert seen.metadata["authorization"] == "Bearer abc"
    assert seen.metadata["x-team"] == "vision"
    assert len(seen.metadata["x-request-id"]) == 32
    trace, parent = seen.metadata["traceparent"].split("-")[1:3]
    assert trace == TRACE_ID
    if proxy == "python":
        assert parent != "00f067aa0ba902b7"  # the front door's span sits between caller and service
    else:
        assert parent == "00f067aa0ba902b7"  # nginx passes the caller's context on as it came


def test_a_caller_that_goes_away_mid_stream_cancels_the_call_behind(
    serve: Any, stack: Stack, open_door: OpenDoor
) -> None:
    scheduler = RecordingScheduler()
    serve(lambda: scheduler)
    door = open_door({**stack.addresses, "scheduler": scheduler.address})
    with grpc.insecure_channel(door) as channel:
        stub = scheduler_grpc.SchedulerServiceStub(channel)
        stream = stub.ReadJobLogs(scheduler_rpc.ReadJobLogsRequest(name="projects/lab/jobs/7", follow=True))
        first = next(iter(stream))
        assert first.lines[0].text == "epoch 1"
        assert scheduler.seen[0].time_remaining is None  # no deadline given, none invented
        stream.cancel()  # type: ignore[no-untyped-call]
    assert scheduler.cancelled.wait(10)


def test_a_caller_whose_deadline_passes_mid_stream_cancels_the_call_behind(
    serve: Any, stack: Stack, open_door: OpenDoor
) -> None:
    scheduler = RecordingScheduler()
    serve(lambda: scheduler)
    door = open_door({**stack.addresses, "scheduler": scheduler.address})
    with grpc.insecure_channel(door) as channel:
        stub = scheduler_grpc.SchedulerServiceStub(channel)
        stream = stub.ReadJobLogs(scheduler_rpc.ReadJobLogsRequest(name="projects/lab/jobs/7"), timeout=1)
        with pytest.raises(grpc.RpcError) as ended:
            list(stream)
    assert ended.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED  # type: ignore[attr-defined]
    assert scheduler.cancelled.wait(10)


def call_inference(channel: grpc.Channel) -> None:
    v2_grpc.GRPCInferenceServiceStub(channel).ServerLive(v2.ServerLiveRequest(), timeout=20)


def call_monitor(channel: grpc.Channel) -> None:
    from atelier.monitor.v1 import monitor_service_pb2 as monitor_rpc
    from atelier.monitor.v1 import monitor_service_pb2_grpc as monitor_grpc

    monitor_grpc.MonitorServiceStub(channel).QueryUsage(monitor_rpc.QueryUsageRequest(), timeout=20)


@pytest.mark.parametrize(
    ("call", "expected"),
    [
        (call_inference, "the inference service at 127.0.0.1:1 is unavailable"),
        (call_monitor, "no address for the monitor service"),
    ],
)
def test_a_service_that_is_down_is_unavailable_and_named(door: str, call: Any, expected: str) -> None:
    with grpc.insecure_channel(door) as channel, pytest.raises(grpc.RpcError) as failed:
        call(channel)
    error = from_rpc_error(failed.value)
    assert isinstance(error, Unavailable)  # at once, not DEADLINE_EXCEEDED after the 20 s
    assert expected in error.message
    assert len(metadata_of(failed.value.trailing_metadata())["x-request-id"]) == 32  # type: ignore[attr-defined]


def health(door: str, service: str) -> int:
    with grpc.insecure_channel(door) as channel:
        answer = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=service), timeout=10)
    return int(answer.status)


def test_health_answers_for_each_service_behind(door: str, stack: Stack, open_door: OpenDoor) -> None:
    serving, not_serving = health_pb2.HealthCheckResponse.SERVING, health_pb2.HealthCheckResponse.NOT_SERVING
    assert health(door, "atelier.data.v1.DataService") == serving
    assert health(door, "data") == serving
    assert health(door, "atelier.scheduler.v1.AgentService") == serving
    assert health(door, "inference.GRPCInferenceService") == not_serving
    assert health(door, "monitor") == not_serving
    assert health(door, "") == not_serving  # not every service behind it serves
    with pytest.raises(grpc.RpcError) as unknown:
        health(door, "atelier.nothing.v1.Nothing")
    assert unknown.value.code() == grpc.StatusCode.NOT_FOUND  # type: ignore[attr-defined]
    running = open_door(stack.addresses, backends=["data", "registry", "scheduler"])
    assert health(running, "") == serving


def reflected(door: str, **request: Any) -> reflection_pb2.ServerReflectionResponse:
    with grpc.insecure_channel(door) as channel:
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        (answer,) = stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(**request)]), timeout=10)
    return answer


def test_reflection_lists_every_service_behind(door: str) -> None:
    listed = {s.name for s in reflected(door, list_services="").list_services_response.service}
    assert {
        "atelier.data.v1.DataService",
        "atelier.registry.v1.RegistryService",
        "atelier.scheduler.v1.SchedulerService",
        "atelier.scheduler.v1.AgentService",
        "atelier.inference.v1.InferenceService",
        "inference.GRPCInferenceService",
        "atelier.monitor.v1.MonitorService",
        "grpc.health.v1.Health",
    } <= listed
    files = reflected(door, file_containing_symbol="atelier.data.v1.DataService").file_descriptor_response
    assert files.file_descriptor_proto  # grpcurl can describe and call it


class _LocalData(data_grpc.DataServiceServicer):  # type: ignore[misc]
    async def GetProject(self, request: data_rpc.GetProjectRequest, context: Any) -> data_pb.Project:
        return data_pb.Project(name=request.name, description="served at the front door")


def test_a_local_service_is_served_at_the_door_not_forwarded(stack: Stack, open_door: OpenDoor) -> None:
    local = LocalService(
        "atelier.data.v1.DataService",
        lambda server: data_grpc.add_DataServiceServicer_to_server(_LocalData(), server),  # type: ignore[abstract]
    )
    door = open_door(stack.addresses, local_services=[local])
    channel, stub = data_stub(door)
    with channel:
        project = stub.GetProject(data_rpc.GetProjectRequest(name="projects/anything"), timeout=10)
        registry_channel = grpc.insecure_channel(door)
        from atelier.registry.v1 import registry_service_pb2 as registry_rpc
        from atelier.registry.v1 import registry_service_pb2_grpc as registry_grpc

        with registry_channel:
            models = registry_grpc.RegistryServiceStub(registry_channel).ListRegisteredModels(
                registry_rpc.ListRegisteredModelsRequest(parent="projects/lab"), timeout=10
            )
    assert project.description == "served at the front door"
    assert list(models.registered_models) == []  # the others are still forwarded
    assert health(door, "atelier.data.v1.DataService") == health_pb2.HealthCheckResponse.SERVING


def test_the_front_door_counts_its_calls_as_every_service_does(stack: Stack, open_door: OpenDoor) -> None:
    """Through nginx too: it reports each call it forwards, and the gateway counts it in the same series."""
    registry = CollectorRegistry()
    door = open_door(stack.addresses, metrics=RpcMetrics(registry))
    channel, stub = data_stub(door)
    with channel:
        stub.ListProjects(data_rpc.ListProjectsRequest(), timeout=10)
        with pytest.raises(grpc.RpcError):
            stub.GetProject(data_rpc.GetProjectRequest(name="projects/nowhere"), timeout=10)
        with pytest.raises(grpc.RpcError):
            call_inference(channel)  # its service is down
    data = {"grpc_type": "unary", "grpc_service": "atelier.data.v1.DataService"}
    inference = {"grpc_type": "unary", "grpc_service": "inference.GRPCInferenceService", "grpc_method": "ServerLive"}

    def counted() -> tuple[float | None, ...]:
        return (
            registry.get_sample_value(
                "grpc_server_handled_total", {**data, "grpc_method": "ListProjects", "grpc_code": "OK"}
            ),
            registry.get_sample_value(
                "grpc_server_handled_total", {**data, "grpc_method": "GetProject", "grpc_code": "NOT_FOUND"}
            ),
            registry.get_sample_value("grpc_server_handled_total", {**inference, "grpc_code": "UNAVAILABLE"}),
            registry.get_sample_value("grpc_server_handling_seconds_count", {**data, "grpc_method": "ListProjects"}),
            registry.get_sample_value("grpc_server_started_total", {**data, "grpc_method": "GetProject"}),
        )

    # A call is counted as it ends (through nginx: when its line arrives), maybe just after the caller saw it.
    deadline = time.monotonic() + 5
    while counted() != (1.0,) * 5 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert counted() == (1.0,) * 5
