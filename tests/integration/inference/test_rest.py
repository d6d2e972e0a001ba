"""REST v2 (KServe v2 / Triton HTTP) with tritonclient.http from PyPI, unchanged: JSON tensors, the
binary-tensor extension, metadata, statistics, and Triton's JSON error bodies over plain HTTP."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

import ml_dtypes
import numpy as np
import pytest
import torch
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from tests.integration.inference.conftest import Platform, register_scripted
from tests.integration.inference.models import ECHO_DTYPES, Affine, Doubler, Echo, echo_example
from tests.integration.inference.test_batching import signature
from tests.integration.inference.test_protocol import ECHO_DATATYPES


def rest(platform: Platform, **options: Any) -> httpclient.InferenceServerClient:
    return httpclient.InferenceServerClient(url=platform.published().http, **options)


def fp32(x: np.ndarray[Any, Any], *, binary: bool, name: str = "input") -> httpclient.InferInput:
    tensor = httpclient.InferInput(name, list(x.shape), "FP32")
    tensor.set_data_from_numpy(x, binary_data=binary)
    return tensor


def call(
    platform: Platform, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None
) -> tuple[int, bytes]:
    request = urllib.request.Request(
        f"http://{platform.published().http}{path}", data=body, method=method, headers=headers or {}
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def error_of(platform: Platform, path: str, body: dict[str, Any] | bytes) -> tuple[int, str]:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    status, content = call(platform, "POST", path, data, {"Content-Type": "application/json"})
    parsed = json.loads(content)
    assert list(parsed) == ["error"], parsed
    return status, parsed["error"]


@pytest.fixture
def affine(platform: Platform) -> tuple[Platform, Affine]:
    model = Affine()
    platform.register(model, torch.randn(2, 4), "affine")
    platform.deploy("affine", "affine@latest", batching={"max_batch_size": 8})
    return platform, model


@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
def test_infer_with_json_and_binary_tensors_equals_the_model_offline(
    affine: tuple[Platform, Affine], binary: bool
) -> None:
    platform, model = affine
    client = rest(platform)
    x = np.random.default_rng(1).standard_normal((5, 4)).astype(np.float32)
    outputs = [httpclient.InferRequestedOutput("output", binary_data=binary)]
    result = client.infer("affine", [fp32(x, binary=binary)], outputs=outputs, request_id="r-1")
    with torch.no_grad():
        expected = model(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(result.as_numpy("output"), expected, rtol=1e-6, atol=1e-6)
    response = result.get_response()
    assert (response["id"], response["model_name"], response["model_version"]) == ("r-1", "affine", "1")
    assert ("data" in response["outputs"][0]) is not binary
    # Without requested outputs tritonclient asks for every output in binary; a version can be named.
    every = client.infer("affine", [fp32(x, binary=binary)], model_version="1")
    np.testing.assert_allclose(every.as_numpy("output"), expected, rtol=1e-6, atol=1e-6)
    client.close()


def test_concurrent_rest_requests_batch_and_the_statistics_agree(affine: tuple[Platform, Affine]) -> None:
    platform, model = affine
    client = rest(platform, concurrency=8)
    rows = np.random.default_rng(2).standard_normal((8, 1, 4)).astype(np.float32)
    # tritonclient.http is gevent-based: concurrency through its own async_infer, not threads.
    pending = [client.async_infer("affine", [fp32(rows[i], binary=True)]) for i in range(8)]
    results = [request.get_result() for request in pending]
    with torch.no_grad():
        expected = model(torch.from_numpy(rows.reshape(8, 4))).numpy()
    for i, result in enumerate(results):
        np.testing.assert_allclose(result.as_numpy("output"), expected[i : i + 1], rtol=1e-6, atol=1e-6)
    stats = client.get_inference_statistics("affine")["model_stats"][0]
    grpc_stats = platform.triton().get_inference_statistics("affine").model_stats[0]
    assert stats["inference_count"] == grpc_stats.inference_count == 8
    assert stats["execution_count"] == grpc_stats.execution_count
    assert stats["inference_stats"]["success"]["count"] == 8
    assert stats["inference_stats"]["fail"]["count"] == 0  # zero counts are written, as Triton does
    assert client.get_inference_statistics()["model_stats"][0]["name"] == "affine"
    client.close()


def test_health_metadata_config_and_repository(affine: tuple[Platform, Affine]) -> None:
    platform, _ = affine
    client = rest(platform)
    assert client.is_server_live()
    assert client.is_server_ready()
    assert client.is_model_ready("affine")
    assert client.is_model_ready("affine", "1")
    assert not client.is_model_ready("affine", "2")
    assert not client.is_model_ready("nothing")
    server = client.get_server_metadata()
    assert server["name"] == "atelier"
    assert "model_repository" in server["extensions"]
    metadata = client.get_model_metadata("affine")
    assert (metadata["name"], metadata["versions"], metadata["platform"]) == ("affine", ["1"], "pytorch_libtorch")
    assert metadata["inputs"] == [{"name": "input", "datatype": "FP32", "shape": [-1, 4]}]
    assert metadata["outputs"] == [{"name": "output", "datatype": "FP32", "shape": [-1, 3]}]
    config = client.get_model_config("affine", "1")
    assert config["max_batch_size"] == 8
    assert [(t["name"], t["data_type"], t["dims"]) for t in config["input"]] == [("input", "TYPE_FP32", [4])]
    assert config["instance_group"][0]["kind"] == "KIND_CPU"
    index = client.get_model_repository_index()
    assert [(m["name"], m["version"], m["state"]) for m in index] == [("affine", "1", "READY")]
    client.unload_model("affine")
    assert not client.is_model_ready("affine")
    client.load_model("affine")
    assert client.is_model_ready("affine")
    client.close()


def test_every_datatype_round_trips_in_binary_and_json(platform: Platform) -> None:
    platform.register(Echo(), echo_example(), "echo")
    platform.deploy("echo", "echo@latest")
    client = rest(platform)
    rng = np.random.default_rng(3)
    sent = []
    for dtype, datatype in zip(ECHO_DTYPES, ECHO_DATATYPES, strict=True):
        if datatype == "BOOL":
            sent.append(rng.integers(0, 2, (2, 3)).astype(bool))
        elif datatype == "BF16":
            sent.append(rng.standard_normal((2, 3)).astype(ml_dtypes.bfloat16))
        elif dtype.is_floating_point:
            sent.append(rng.standard_normal((2, 3)).astype(str(dtype).removeprefix("torch.")))
        else:
            low = -100 if dtype.is_signed else 0
            sent.append(rng.integers(low, 100, (2, 3)).astype(str(dtype).removeprefix("torch.")))
    for binary in (True, False):
        inputs, outputs = [], []
        for index, (array, datatype) in enumerate(zip(sent, ECHO_DATATYPES, strict=True)):
            tensor = httpclient.InferInput(f"input__{index}", [2, 3], datatype)
            # FP16 and BF16 have no JSON form in tritonclient: they always travel binary.
            tensor.set_data_from_numpy(array, binary_data=binary or datatype in ("FP16", "BF16"))
            inputs.append(tensor)
            outputs.append(httpclient.InferRequestedOutput(f"output__{index}", binary_data=binary))
        result = client.infer("echo", inputs, outputs=outputs)
        for index, (array, datatype) in enumerate(zip(sent, ECHO_DATATYPES, strict=True)):
            received = result.as_numpy(f"output__{index}")
            if binary:
                assert received.dtype == array.dtype, datatype
                assert received.tobytes() == array.tobytes(), datatype
            else:  # JSON numbers: equal values
                np.testing.assert_array_equal(received.astype(np.float64), array.astype(np.float64), datatype)
    client.close()


def test_rest_errors_are_triton_json_bodies_with_triton_status_codes(platform: Platform) -> None:
    register_scripted(platform, Doubler(), "doubler", signature(-1))
    platform.deploy("doubler", "doubler@latest")
    good = {"inputs": [{"name": "x", "shape": [1, 2], "datatype": "FP32", "data": [1.0, 2.0]}]}
    status, content = call(platform, "POST", "/v2/models/doubler/infer", json.dumps(good).encode())
    assert (status, json.loads(content)["outputs"][0]["data"]) == (200, [2.0, 4.0])
    assert error_of(platform, "/v2/models/nothing/infer", good) == (
        404,
        "Request for unknown model: 'nothing' is not found",
    )
    status, message = error_of(platform, "/v2/models/doubler/versions/7/infer", good)
    assert status == 404
    assert message.startswith("Request for unknown model: 'doubler' version 7 is not found")
    wrong_type = {"inputs": [{"name": "x", "shape": [1, 2], "datatype": "INT32", "data": [1, 2]}]}
    assert error_of(platform, "/v2/models/doubler/infer", wrong_type) == (
        400,
        "inference input 'x' data-type is 'INT32', but model 'doubler' expects 'FP32'",
    )
    wrong_count = {"inputs": [{"name": "x", "shape": [1, 2], "datatype": "FP32", "data": [1.0]}]}
    assert error_of(platform, "/v2/models/doubler/infer", wrong_count) == (
        400,
        "unexpected number of elements 1 for input 'x', expecting 2",
    )
    status, message = error_of(platform, "/v2/models/doubler/infer", b"{not json")
    assert status == 400
    assert message.startswith("failed to parse the request JSON buffer")
    assert error_of(platform, "/v2/models/doubler/infer", {"inputs": 3}) == (
        400,
        "the inference request needs 'inputs', a list of tensors",
    )
    # Binary data that does not match what the header announces.
    header = json.dumps(
        {"inputs": [{"name": "x", "shape": [1, 2], "datatype": "FP32", "parameters": {"binary_data_size": 8}}]}
    ).encode()
    status, content = call(
        platform,
        "POST",
        "/v2/models/doubler/infer",
        header + b"\0" * 4,
        {"Inference-Header-Content-Length": str(len(header))},
    )
    assert status == 400
    assert json.loads(content)["error"] == (
        "input 'x' has 8 bytes of binary data, but only 4 remain after the JSON header"
    )
    # A tensor over the limit (1 MiB in the fixture): RESOURCE_EXHAUSTED is 429.
    client = rest(platform)
    big = np.ones((1, 300_000), dtype=np.float32)
    with pytest.raises(InferenceServerException) as refused:
        client.infer("doubler", [fp32(big, binary=True, name="x")])
    assert refused.value.status() == "429"
    assert refused.value.message().startswith("input 'x' is 1200000 bytes, larger than the limit of 1048576 bytes")
    client.close()
    status, content = call(platform, "GET", "/v2/nowhere")
    assert (status, json.loads(content)) == (404, {"error": "Not Found"})


@pytest.mark.parametrize("algorithm", ["gzip", "deflate"])
def test_compressed_request_bodies(affine: tuple[Platform, Affine], algorithm: str) -> None:
    platform, model = affine
    client = rest(platform)
    x = np.random.default_rng(4).standard_normal((2, 4)).astype(np.float32)
    result = client.infer("affine", [fp32(x, binary=True)], request_compression_algorithm=algorithm)
    with torch.no_grad():
        expected = model(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(result.as_numpy("output"), expected, rtol=1e-6, atol=1e-6)
    client.close()
    status, content = call(
        platform, "POST", "/v2/models/affine/infer", b"not compressed", {"Content-Encoding": algorithm}
    )
    assert status == 400
    assert json.loads(content)["error"].startswith(f"the request body is not valid {algorithm} data")
