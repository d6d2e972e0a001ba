"""Bad requests get Triton's status codes and messages: what was wrong, received and expected."""

from __future__ import annotations

from typing import Any

import grpc
import numpy as np
import pytest
import torch
import tritonclient.grpc as grpcclient
from tritonclient.grpc import service_pb2, service_pb2_grpc
from tritonclient.utils import InferenceServerException

from tests.integration.inference.conftest import Platform, Stream, register_scripted
from tests.integration.inference.models import Affine, Doubler, Echo, echo_example
from tests.integration.inference.test_batching import signature


@pytest.fixture
def affine(platform: Platform) -> Platform:
    platform.register(Affine(), torch.randn(2, 4), "affine")
    platform.deploy("affine", "affine@latest")
    return platform


def tensor(name: str, x: np.ndarray[Any, Any], datatype: str) -> grpcclient.InferInput:
    made = grpcclient.InferInput(name, list(x.shape), datatype)
    made.set_data_from_numpy(x)
    return made


def refused(platform: Platform, model: str, inputs: list[Any], **options: Any) -> tuple[str, str]:
    client = platform.triton()
    with pytest.raises(InferenceServerException) as error:
        client.infer(model, inputs, **options)
    client.close()
    return str(error.value.status()).removeprefix("StatusCode."), error.value.message()


def raw_call(platform: Platform, request: service_pb2.ModelInferRequest) -> grpc.RpcError:
    with grpc.insecure_channel(platform.address) as channel, pytest.raises(grpc.RpcError) as error:
        service_pb2_grpc.GRPCInferenceServiceStub(channel).ModelInfer(request, timeout=30)
    return error.value


X = np.ones((1, 4), dtype=np.float32)


def test_wrong_datatype(affine: Platform) -> None:
    code, message = refused(affine, "affine", [tensor("input", X.astype(np.float64), "FP64")])
    assert code == "INVALID_ARGUMENT"
    assert message == "inference input 'input' data-type is 'FP64', but model 'affine' expects 'FP32'"


def test_wrong_shape(affine: Platform) -> None:
    code, message = refused(affine, "affine", [tensor("input", np.ones((1, 5), np.float32), "FP32")])
    assert code == "INVALID_ARGUMENT"
    assert message == "unexpected shape for input 'input' for model 'affine'. Expected [-1,4], got [1,5]"


def test_batch_larger_than_the_maximum(affine: Platform) -> None:
    code, message = refused(affine, "affine", [tensor("input", np.ones((9, 4), np.float32), "FP32")])
    assert code == "INVALID_ARGUMENT"
    assert message.startswith("inference request batch-size must be <= 8 for 'affine', got 9")


def test_unknown_input_name(affine: Platform) -> None:
    code, message = refused(affine, "affine", [tensor("image", X, "FP32")])
    assert code == "INVALID_ARGUMENT"
    assert message == "unexpected inference input 'image' for model 'affine', allowed inputs are: input"


def test_missing_inputs(platform: Platform) -> None:
    platform.register(Echo(), echo_example(), "echo")
    platform.deploy("echo", "echo@latest")
    code, message = refused(platform, "echo", [tensor("input__0", np.ones((2, 3), bool), "BOOL")])
    assert code == "INVALID_ARGUMENT"
    assert message.startswith("expected 10 inputs but got 1 inputs for model 'echo'. Got input(s) ['input__0'], ")
    assert "missing required input(s) ['input__1', 'input__2'," in message


def test_unknown_output(affine: Platform) -> None:
    code, message = refused(
        affine, "affine", [tensor("input", X, "FP32")], outputs=[grpcclient.InferRequestedOutput("logits")]
    )
    assert code == "INVALID_ARGUMENT"
    assert message == "unexpected inference output 'logits' for model 'affine', allowed outputs are: output"


def test_byte_length_that_does_not_match_the_shape(affine: Platform) -> None:
    request = service_pb2.ModelInferRequest(model_name="affine")
    request.inputs.add(name="input", datatype="FP32", shape=[1, 4])
    request.raw_input_contents.append(b"\0" * 12)
    error = raw_call(affine, request)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.details() == "unexpected total byte size 12 for input 'input', expecting 16"


def test_raw_contents_that_do_not_match_the_inputs(affine: Platform) -> None:
    request = service_pb2.ModelInferRequest(model_name="affine")
    request.inputs.add(name="input", datatype="FP32", shape=[1, 4])
    request.raw_input_contents.extend([b"\0" * 16, b"\0" * 16])
    error = raw_call(affine, request)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "raw_input_contents has 2 entries for 1 inputs" in (error.details() or "")


def test_raw_and_typed_contents_for_one_input_are_refused(affine: Platform) -> None:
    request = service_pb2.ModelInferRequest(model_name="affine")
    request.inputs.add(name="input", datatype="FP32", shape=[1, 4]).contents.fp32_contents.extend([1, 1, 1, 1])
    request.raw_input_contents.append(b"\0" * 16)
    error = raw_call(affine, request)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert (error.details() or "").startswith(
        "contents field must not be specified when using raw_input_contents for 'input' for model 'affine'"
    )


def test_typed_contents_are_accepted_too(affine: Platform) -> None:
    request = service_pb2.ModelInferRequest(model_name="affine")
    request.inputs.add(name="input", datatype="FP32", shape=[1, 4]).contents.fp32_contents.extend([1, 1, 1, 1])
    with grpc.insecure_channel(affine.address) as channel:
        response = service_pb2_grpc.GRPCInferenceServiceStub(channel).ModelInfer(request, timeout=30)
    with torch.no_grad():
        expected = Affine()(torch.ones(1, 4)).numpy()
    np.testing.assert_allclose(np.frombuffer(response.raw_output_contents[0], np.float32), expected[0], rtol=1e-6)


def test_unknown_datatype(affine: Platform) -> None:
    request = service_pb2.ModelInferRequest(model_name="affine")
    request.inputs.add(name="input", datatype="FLOAT", shape=[1, 4])
    request.raw_input_contents.append(b"\0" * 16)
    error = raw_call(affine, request)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.details() == (
        "invalid datatype 'FLOAT'; datatypes are BOOL, UINT8, UINT16, UINT32, UINT64, INT8, INT16, INT32, INT64, "
        "FP16, FP32, FP64, BF16, BYTES"
    )


def test_unknown_model_and_version(affine: Platform) -> None:
    code, message = refused(affine, "nothing", [tensor("input", X, "FP32")])
    assert (code, message) == ("NOT_FOUND", "Request for unknown model: 'nothing' is not found")
    code, message = refused(affine, "affine", [tensor("input", X, "FP32")], model_version="7")
    assert code == "NOT_FOUND"
    assert message.startswith("Request for unknown model: 'affine' version 7 is not found")


def test_a_tensor_over_the_limit(platform: Platform) -> None:
    register_scripted(platform, Doubler(), "doubler", signature(-1))
    platform.deploy("doubler", "doubler@latest")
    big = np.ones((1, 300_000), dtype=np.float32)  # 1.2 MB; the fixture's limit is 1 MiB
    code, message = refused(platform, "doubler", [tensor("x", big, "FP32")])
    assert code == "RESOURCE_EXHAUSTED"
    assert message.startswith("input 'x' is 1200000 bytes, larger than the limit of 1048576 bytes")


def test_an_invalid_request_fails_alone_and_its_neighbours_batch(platform: Platform) -> None:
    platform.register(Affine(), torch.randn(2, 4), "affine")
    platform.deploy(
        "affine", "affine@latest", batching={"preferred_batch_sizes": [2], "max_queue_delay_us": 120_000_000}
    )
    stream = Stream(platform.triton())
    stream.send("affine", [tensor("input", X, "FP32")], "a")
    stream.send("affine", [tensor("input", np.ones((1, 3), np.float32), "FP32")], "bad")
    stream.send("affine", [tensor("input", X * 2, "FP32")], "c")
    outcomes = [stream.next() for _ in range(3)]
    stream.close()
    assert sorted(i for i, _, e in outcomes if e is None) == ["a", "c"]
    errors = [e.message() for _, _, e in outcomes if e is not None]
    assert errors == ["unexpected shape for input 'input' for model 'affine'. Expected [-1,4], got [1,3]"]
    stats = platform.triton().get_inference_statistics("affine").model_stats[0]
    assert (stats.inference_count, stats.execution_count) == (2, 1)
