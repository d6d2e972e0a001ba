"""tritonclient (PyPI, unchanged) against deployments of registered TorchScript and torch.export models."""

from __future__ import annotations

import concurrent.futures
import logging
import time
from typing import Any

import ml_dtypes
import numpy as np
import pytest
import torch
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from tests.integration.inference.conftest import Platform
from tests.integration.inference.models import ECHO_DTYPES, Affine, Echo, echo_example

ECHO_DATATYPES = ["BOOL", "UINT8", "INT8", "INT16", "INT32", "INT64", "FP16", "BF16", "FP32", "FP64"]


def affine_input(x: np.ndarray[Any, Any]) -> grpcclient.InferInput:
    tensor = grpcclient.InferInput("input", list(x.shape), "FP32")
    tensor.set_data_from_numpy(x)
    return tensor


@pytest.mark.parametrize("format", ["torchscript", "export"])
def test_infer_equals_the_model_offline(platform: Platform, format: str) -> None:
    model = Affine()
    version = platform.register(model, torch.randn(2, 4), "affine", format=format)
    platform.deploy("affine", "affine@latest")
    client = platform.triton()
    x = np.random.default_rng(1).standard_normal((5, 4)).astype(np.float32)
    result = client.infer("affine", [affine_input(x)], request_id="req-1")
    with torch.no_grad():
        expected = model(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(result.as_numpy("output"), expected, rtol=1e-6, atol=1e-6)
    response = result.get_response()
    assert (response.id, response.model_name, response.model_version) == ("req-1", "affine", str(version.number))
    client.close()


def test_concurrent_requests_are_batched_and_split_back_exactly(platform: Platform) -> None:
    model = Affine()
    platform.register(model, torch.randn(2, 4), "affine")
    # With a delay far longer than the test, a batch only goes out at the preferred size (4) or
    # the maximum (8, when requests piled up while the instance was busy).
    platform.deploy(
        "affine",
        "affine@v1",
        batching={"max_batch_size": 8, "preferred_batch_sizes": [4], "max_queue_delay_us": 60_000_000},
    )
    client = platform.triton()
    rows = np.random.default_rng(2).standard_normal((16, 1, 4)).astype(np.float32)

    def call(i: int) -> np.ndarray[Any, Any]:
        return client.infer("affine", [affine_input(rows[i])], request_id=str(i)).as_numpy("output")  # type: ignore[no-any-return]

    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        outputs = list(pool.map(call, range(16)))
    with torch.no_grad():
        expected = model(torch.from_numpy(rows.reshape(16, 4))).numpy()
    for i, output in enumerate(outputs):
        np.testing.assert_allclose(output, expected[i : i + 1], rtol=1e-6, atol=1e-6)
    stats = client.get_inference_statistics("affine").model_stats[0]
    assert stats.inference_count == 16
    assert stats.execution_count < 16
    assert {b.batch_size for b in stats.batch_stats} <= {4, 8}
    assert sum(b.batch_size * b.compute_infer.count for b in stats.batch_stats) == 16
    assert sum(b.compute_infer.count for b in stats.batch_stats) == stats.execution_count
    assert stats.inference_stats.success.count == 16
    assert stats.inference_stats.queue.count == 16
    client.close()


def test_one_caller_at_a_time_gets_the_same_answers_and_logs_only_failures(
    platform: Platform, caplog: pytest.LogCaptureFixture
) -> None:
    # One request at a time: the first runs on an instance thread, the next ones (a fast model, an idle
    # batcher) on the event loop itself. Successful calls write no log line; a failed one does.
    model = Affine()
    platform.register(model, torch.randn(2, 4), "affine")
    platform.deploy("affine", "affine@latest", instances=2)
    client = platform.triton()
    rows = np.random.default_rng(4).standard_normal((12, 1, 4)).astype(np.float32)
    with caplog.at_level(logging.INFO):
        outputs = [client.infer("affine", [affine_input(row)]).as_numpy("output") for row in rows]
        with pytest.raises(InferenceServerException, match="unexpected shape"):
            client.infer("affine", [affine_input(np.ones((1, 5), dtype=np.float32))])
        # The call's line is written once its status has gone out: wait for it (or for a later call's).
        for _ in range(200):
            if any(str(r.__dict__.get("rpc")).endswith("/ModelInfer") for r in caplog.records):
                break
            time.sleep(0.05)
    with torch.no_grad():
        expected = model(torch.from_numpy(rows.reshape(12, 4))).numpy()
    for i, output in enumerate(outputs):
        np.testing.assert_allclose(output, expected[i : i + 1], rtol=1e-6, atol=1e-6)
    stats = client.get_inference_statistics("affine").model_stats[0]
    assert (stats.inference_count, stats.execution_count, stats.inference_stats.success.count) == (12, 12, 12)
    # The inference service's own calls: the services share this process, and the deployment's alias
    # check may call the registry (logged at INFO) while the requests run.
    calls = [
        r.__dict__
        for r in caplog.records
        if r.name == "atelier.runtime.interceptors" and str(r.__dict__.get("rpc")).startswith("/inference.")
    ]
    assert [(c["rpc"], c["code"]) for c in calls] == [
        ("/inference.GRPCInferenceService/ModelInfer", "INVALID_ARGUMENT")
    ]
    client.close()


def test_every_datatype_round_trips(platform: Platform) -> None:
    platform.register(Echo(), echo_example(), "echo")
    platform.deploy("echo", "echo@latest")
    client = platform.triton()
    metadata = client.get_model_metadata("echo")
    assert [t.datatype for t in metadata.inputs] == ECHO_DATATYPES
    rng = np.random.default_rng(3)
    sent = []
    for dtype, datatype in zip(ECHO_DTYPES, ECHO_DATATYPES, strict=True):
        if datatype == "BOOL":
            sent.append(rng.integers(0, 2, (2, 3)).astype(bool))
        elif datatype == "BF16":
            sent.append(rng.standard_normal((2, 3)).astype(ml_dtypes.bfloat16))  # tritonclient's BF16 arrays
        elif dtype.is_floating_point:
            sent.append(rng.standard_normal((2, 3)).astype(str(dtype).removeprefix("torch.")))
        else:
            low = -100 if dtype.is_signed else 0
            sent.append(rng.integers(low, 100, (2, 3)).astype(str(dtype).removeprefix("torch.")))
    inputs = []
    for index, (array, datatype) in enumerate(zip(sent, ECHO_DATATYPES, strict=True)):
        tensor = grpcclient.InferInput(f"input__{index}", [2, 3], datatype)
        tensor.set_data_from_numpy(array)
        inputs.append(tensor)
    result = client.infer("echo", inputs)
    for index, (array, datatype) in enumerate(zip(sent, ECHO_DATATYPES, strict=True)):
        assert result.get_output(f"output__{index}").datatype == datatype
        received = result.as_numpy(f"output__{index}")
        assert received.dtype == array.dtype, datatype
        assert received.tobytes() == array.tobytes(), datatype
    client.close()


def test_metadata_config_and_health(platform: Platform) -> None:
    platform.register(Affine(), torch.randn(2, 4), "affine")
    platform.deploy(
        "affine",
        "affine@latest",
        instances=2,
        batching={"max_batch_size": 16, "preferred_batch_sizes": [4, 8], "max_queue_delay_us": 500},
        queue={"max_queue_size": 100, "default_timeout_us": 2_000_000},
    )
    client = platform.triton()
    assert client.is_server_live()
    assert client.is_server_ready()
    assert client.is_model_ready("affine")
    assert client.is_model_ready("affine", "1")
    assert not client.is_model_ready("affine", "2")
    assert not client.is_model_ready("nothing")
    server = client.get_server_metadata()
    assert server.name == "atelier"
    assert "model_repository" in server.extensions
    metadata = client.get_model_metadata("affine")
    assert (metadata.name, list(metadata.versions), metadata.platform) == ("affine", ["1"], "pytorch_libtorch")
    assert [(t.name, t.datatype, list(t.shape)) for t in metadata.inputs] == [("input", "FP32", [-1, 4])]
    assert [(t.name, t.datatype, list(t.shape)) for t in metadata.outputs] == [("output", "FP32", [-1, 3])]
    config = client.get_model_config("affine").config
    assert config.max_batch_size == 16
    assert [(t.name, t.data_type, list(t.dims)) for t in config.input] == [("input", 11, [4])]  # TYPE_FP32
    assert list(config.dynamic_batching.preferred_batch_size) == [4, 8]
    assert config.dynamic_batching.max_queue_delay_microseconds == 500
    assert config.dynamic_batching.default_queue_policy.max_queue_size == 100
    assert config.dynamic_batching.default_queue_policy.default_timeout_microseconds == 2_000_000
    assert (config.instance_group[0].count, config.instance_group[0].kind) == (2, 2)  # KIND_CPU
    client.close()


def test_repository_index_unload_and_load(platform: Platform) -> None:
    platform.register(Affine(), torch.randn(2, 4), "affine")
    platform.deploy("affine", "affine@latest")
    client = platform.triton()
    index = client.get_model_repository_index()
    assert [(m.name, m.version, m.state) for m in index.models] == [("affine", "1", "READY")]
    client.unload_model("affine")
    assert not client.is_model_ready("affine")
    x = np.ones((1, 4), dtype=np.float32)
    with pytest.raises(InferenceServerException) as refused:
        client.infer("affine", [affine_input(x)])
    assert refused.value.status() == "StatusCode.UNAVAILABLE"
    assert "UNLOADED" in refused.value.message()
    assert platform.inference.get("projects/lab/deployments/affine").state == 4  # UNLOADED
    client.load_model("affine")
    assert client.is_model_ready("affine")
    assert client.infer("affine", [affine_input(x)]).as_numpy("output").shape == (1, 3)
    client.close()


def test_extensions_atelier_does_not_offer_are_unimplemented(platform: Platform) -> None:
    client = platform.triton()
    with pytest.raises(InferenceServerException) as error:
        client.get_system_shared_memory_status()
    assert error.value.status() == "StatusCode.UNIMPLEMENTED"
    assert "send tensors in raw_input_contents" in error.value.message()
    client.close()


def test_a_model_without_a_batch_dimension_runs_each_request_alone(platform: Platform) -> None:
    from atelier.registry.v1 import resources_pb2 as registry_pb
    from tests.integration.inference.conftest import register_scripted
    from tests.integration.inference.models import Doubler

    fp = registry_pb.TENSOR_DATATYPE_FP32
    fixed = registry_pb.ModelSignature(
        inputs=[registry_pb.TensorSpec(name="x", datatype=fp, shape=[2, 3])],
        outputs=[registry_pb.TensorSpec(name="y", datatype=fp, shape=[2, 3])],
    )
    register_scripted(platform, Doubler(), "fixed", fixed)
    platform.deploy("fixed", "fixed@latest", batching={"max_queue_delay_us": 120_000_000})
    client = platform.triton()
    config = client.get_model_config("fixed").config
    assert config.max_batch_size == 0
    assert list(config.input[0].dims) == [2, 3]
    assert config.WhichOneof("scheduling_choice") is None
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    tensor = grpcclient.InferInput("x", [2, 3], "FP32")
    tensor.set_data_from_numpy(x)
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        outputs = list(pool.map(lambda _: client.infer("fixed", [tensor]).as_numpy("y"), range(4)))
    for output in outputs:
        np.testing.assert_array_equal(output, x * 2)
    stats = client.get_inference_statistics("fixed").model_stats[0]
    assert (stats.inference_count, stats.execution_count) == (4, 4)
    client.close()
