"""gRPC served from ASGI behind Envoy (pyvoy), called with grpcio and tritonclient: messages, metadata,
deadlines, statuses with their details, cancellation and bidirectional streams."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
from grpc_status import rpc_status
from prometheus_client.parser import text_string_to_metric_families

from atelier.errors import InvalidArgument, from_rpc_error
from atelier.inference.protocol import grpc_service_pb2 as v2
from atelier.inference.protocol import grpc_service_pb2_grpc
from atelier.stack.addresses import free_port
from tests.integration.runtime.grpc_asgi_app import MAX_MESSAGE_BYTES
from tests.waiting import wait_for

REPO = Path(__file__).resolve().parents[3]
PYVOY = Path(sys.executable).parent / "pyvoy"


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    markers = tmp_path_factory.mktemp("markers")
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(REPO), "GRPC_ASGI_MARKERS": str(markers)}
    log = (markers / "pyvoy.log").open("wb")
    command = [str(PYVOY), "tests.integration.runtime.grpc_asgi_app:app", "--port", str(port), "--log-level", "error"]
    process = subprocess.Popen(command, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    address = f"127.0.0.1:{port}"

    def answers() -> bool:
        assert process.poll() is None, (markers / "pyvoy.log").read_text()
        with grpc.insecure_channel(address) as channel:
            try:
                grpc_service_pb2_grpc.GRPCInferenceServiceStub(channel).ModelInfer(
                    v2.ModelInferRequest(model_name="echo"), timeout=1
                )
            except grpc.RpcError:
                return False
        return True

    try:
        wait_for(answers, "pyvoy's start")
        yield address, markers
    finally:
        process.terminate()
        process.wait(timeout=30)
        log.close()


@pytest.fixture
def stub(served: tuple[str, Path]) -> Iterator[grpc_service_pb2_grpc.GRPCInferenceServiceStub]:
    with grpc.insecure_channel(served[0]) as channel:
        yield grpc_service_pb2_grpc.GRPCInferenceServiceStub(channel)


def request(model: str = "echo", id: str = "", payload: bytes = b"\x01\x02\x03\x04") -> v2.ModelInferRequest:
    made = v2.ModelInferRequest(model_name=model, id=id)
    made.inputs.add(name="x", datatype="FP32", shape=[1, len(payload) // 4])
    made.raw_input_contents.append(payload)
    return made


def test_a_unary_call_answers_its_request(stub: grpc_service_pb2_grpc.GRPCInferenceServiceStub) -> None:
    payload = np.arange(1000, dtype=np.float32).tobytes()
    response = stub.ModelInfer(request(id="r1", payload=payload), timeout=10)
    assert (response.model_name, response.id) == ("echo", "r1")
    assert [(o.name, o.datatype, list(o.shape)) for o in response.outputs] == [("x", "FP32", [1, 1000])]
    assert response.raw_output_contents[0] == payload


def test_an_empty_request_message_is_a_request(stub: grpc_service_pb2_grpc.GRPCInferenceServiceStub) -> None:
    assert stub.ModelInfer(v2.ModelInferRequest(), timeout=10).id.startswith("caller=;bin=;deadline=")


def test_a_message_that_arrives_in_many_chunks_is_whole(stub: grpc_service_pb2_grpc.GRPCInferenceServiceStub) -> None:
    payload = np.random.default_rng(0).standard_normal(MAX_MESSAGE_BYTES // 4 - 1024).astype(np.float32).tobytes()
    response = stub.ModelInfer(request(id="big", payload=payload), timeout=30)
    assert response.raw_output_contents[0] == payload


def test_the_callers_metadata_and_deadline_reach_the_handler(
    stub: grpc_service_pb2_grpc.GRPCInferenceServiceStub,
) -> None:
    metadata = (("x-caller", "ada"), ("x-token-bin", b"\x00\xff\x10"))
    with_deadline = stub.ModelInfer(request(), metadata=metadata, timeout=30)
    assert with_deadline.id.startswith("caller=ada;bin=00ff10;deadline=")
    assert 25.0 <= float(with_deadline.id.rpartition("=")[2]) <= 30.5  # the client rounds its grpc-timeout up
    assert stub.ModelInfer(request()).id == "caller=;bin=;deadline=none"


def refused(stub: grpc_service_pb2_grpc.GRPCInferenceServiceStub, model: str) -> tuple[Any, str, grpc.RpcError]:
    """The status code and message a call to `model` fails with, and the error itself."""
    with pytest.raises(grpc.RpcError) as failed:
        stub.ModelInfer(request(model), timeout=10)
    return failed.value.code(), failed.value.details(), failed.value  # type: ignore[attr-defined]


def test_an_atelier_error_keeps_its_code_message_and_details(
    stub: grpc_service_pb2_grpc.GRPCInferenceServiceStub,
) -> None:
    code, details, error = refused(stub, "bad")
    message = "unexpected shape for input 'x' of model 'bad' (100% wrong, naïvely): expected [1,2], got [3]"
    assert (code, details) == (grpc.StatusCode.INVALID_ARGUMENT, message)
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    assert status is not None
    assert status.message == message
    again = from_rpc_error(error)
    assert isinstance(again, InvalidArgument)
    assert again.metadata == {"tensor": "x"}


def test_other_failures_are_internal_and_aborts_keep_their_code(
    stub: grpc_service_pb2_grpc.GRPCInferenceServiceStub,
) -> None:
    code, details, _ = refused(stub, "crash")
    assert (code, details) == (grpc.StatusCode.INTERNAL, "internal error in ModelInfer; see the service log")
    code, details, _ = refused(stub, "abort")
    assert (code, details) == (grpc.StatusCode.UNIMPLEMENTED, "not offered here")


def test_a_passed_deadline_ends_the_handler(
    stub: grpc_service_pb2_grpc.GRPCInferenceServiceStub, served: tuple[str, Path]
) -> None:
    with pytest.raises(grpc.RpcError) as late:
        stub.ModelInfer(request("slow", id="deadline"), timeout=0.5)
    assert late.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED  # type: ignore[attr-defined]
    marker = served[1] / "deadline"
    wait_for(lambda: marker.exists() and marker.read_text() == "cancelled", "the handler's cancellation")


def test_a_client_that_goes_away_cancels_its_call(
    stub: grpc_service_pb2_grpc.GRPCInferenceServiceStub, served: tuple[str, Path]
) -> None:
    marker = served[1] / "gone"
    pending = stub.ModelInfer.future(request("slow", id="gone"))
    wait_for(marker.exists, "the handler's start")
    pending.cancel()
    wait_for(lambda: marker.read_text() == "cancelled", "the handler's cancellation")


def test_calls_answered_after_a_wait_log_no_error(
    stub: grpc_service_pb2_grpc.GRPCInferenceServiceStub, served: tuple[str, Path]
) -> None:
    log = served[1] / "pyvoy.log"
    before = log.stat().st_size
    for i in range(20):
        assert stub.ModelInfer(request("wait", id=f"w{i}"), timeout=10).id == f"w{i}"
    time.sleep(0.5)
    with log.open("rb") as written:
        written.seek(before)
        logged = written.read().decode(errors="replace")
    assert "Error" not in logged, logged[-2000:]


def test_unknown_methods_oversized_and_compressed_messages_are_refused(served: tuple[str, Path]) -> None:
    with grpc.insecure_channel(served[0]) as channel:
        unknown = channel.unary_unary("/inference.GRPCInferenceService/Nope")
        with pytest.raises(grpc.RpcError) as missing:
            unknown(b"", timeout=10)
        assert missing.value.code() == grpc.StatusCode.UNIMPLEMENTED  # type: ignore[attr-defined]
        assert missing.value.details() == "Method not found: /inference.GRPCInferenceService/Nope"  # type: ignore[attr-defined]
        stub = grpc_service_pb2_grpc.GRPCInferenceServiceStub(channel)
        with pytest.raises(grpc.RpcError) as large:
            stub.ModelInfer(request(payload=bytes(MAX_MESSAGE_BYTES)), timeout=10)
        assert large.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED  # type: ignore[attr-defined]
        assert "larger than max" in large.value.details()  # type: ignore[attr-defined]
        with pytest.raises(grpc.RpcError) as compressed:
            stub.ModelInfer(request(), timeout=10, compression=grpc.Compression.Gzip)
        assert compressed.value.code() == grpc.StatusCode.UNIMPLEMENTED  # type: ignore[attr-defined]
        assert "grpc-encoding 'gzip' is not accepted" in compressed.value.details()  # type: ignore[attr-defined]


def test_a_bidirectional_stream_answers_each_request_in_turn(
    stub: grpc_service_pb2_grpc.GRPCInferenceServiceStub,
) -> None:
    sent = [request(id=f"s{i}", payload=np.full(4, i, np.float32).tobytes()) for i in range(5)]
    sent.insert(2, request("bad", id="b"))
    answers = list(stub.ModelStreamInfer(iter(sent), timeout=10))
    assert [a.error_message for a in answers] == ["", "", "bad request", "", "", ""]
    assert [a.infer_response.id for a in answers if not a.error_message] == ["s0", "s1", "s2", "s3", "s4"]
    assert answers[-1].infer_response.raw_output_contents[0] == np.full(4, 4, np.float32).tobytes()


def test_a_stream_whose_caller_leaves_mid_answer_ends_quietly(
    stub: grpc_service_pb2_grpc.GRPCInferenceServiceStub, served: tuple[str, Path]
) -> None:
    log = served[1] / "pyvoy.log"
    before = log.stat().st_size
    stream = stub.ModelStreamInfer(iter([request("flood", id="f")]), timeout=30)
    assert next(stream).infer_response.id == "f"
    stream.cancel()  # type: ignore[attr-defined]
    time.sleep(1.0)  # the handler's next answers meet a closed stream
    with log.open("rb") as written:
        written.seek(before)
        logged = written.read().decode(errors="replace")
    assert "Error" not in logged, logged[-2000:]


def test_tritonclient_calls_it_unchanged(served: tuple[str, Path]) -> None:
    import tritonclient.grpc as grpcclient

    client = grpcclient.InferenceServerClient(url=served[0])
    x = np.arange(6, dtype=np.float32).reshape(1, 6)
    given = grpcclient.InferInput("x", list(x.shape), "FP32")
    given.set_data_from_numpy(x)
    result = client.infer("echo", [given], request_id="t1")
    assert result.get_response().id == "t1"
    assert np.array_equal(result.as_numpy("x"), x)
    client.close()


def test_calls_are_counted_by_method_and_code(
    stub: grpc_service_pb2_grpc.GRPCInferenceServiceStub, served: tuple[str, Path]
) -> None:
    def handled(code: str) -> float:
        text = urllib.request.urlopen(f"http://{served[0]}/metrics", timeout=10).read().decode()
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                labels = sample.labels
                if (
                    sample.name == "grpc_server_handled_total"
                    and labels.get("grpc_method") == "ModelInfer"
                    and labels.get("grpc_code") == code
                ):
                    return sample.value
        return 0.0

    ok, invalid = handled("OK"), handled("INVALID_ARGUMENT")
    stub.ModelInfer(request(), timeout=10)
    refused(stub, "bad")
    assert (handled("OK"), handled("INVALID_ARGUMENT")) == (ok + 1, invalid + 1)


def test_grpcs_own_health_and_reflection_servicers_are_served(served: tuple[str, Path]) -> None:
    from grpc_health.v1 import health_pb2, health_pb2_grpc
    from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase

    with grpc.insecure_channel(served[0]) as channel:
        checks = health_pb2_grpc.HealthStub(channel)
        serving = health_pb2.HealthCheckResponse.SERVING
        assert checks.Check(health_pb2.HealthCheckRequest(), timeout=10).status == serving
        with pytest.raises(grpc.RpcError) as unknown:
            checks.Check(health_pb2.HealthCheckRequest(service="nope"), timeout=10)
        assert unknown.value.code() == grpc.StatusCode.NOT_FOUND  # type: ignore[attr-defined]
        watch = checks.Watch(health_pb2.HealthCheckRequest(), timeout=10)  # server streaming, written by the handler
        assert next(watch).status == health_pb2.HealthCheckResponse.SERVING
        watch.cancel()
        services = ProtoReflectionDescriptorDatabase(channel).get_services()  # bidirectional
        assert set(services) >= {"inference.GRPCInferenceService", "grpc.health.v1.Health"}
