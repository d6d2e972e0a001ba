"""The inference service behind Envoy (`grpc_server = "envoy"`, the default), started as `python -m services.inference`
starts it: every gRPC method on Envoy's port (KServe's, the management API, health, reflection), REST v2 on
uvicorn as before, and a clean stop on SIGTERM."""

from __future__ import annotations

import signal
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
import torch
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase
from prometheus_client.parser import text_string_to_metric_families
from tritonclient.utils import InferenceServerException

from tests.integration.inference.conftest import EnvoyPlatform, Stream, start_data_and_registry
from tests.integration.inference.envoy_process import envoy_environment, inference_in_envoy
from tests.integration.inference.models import Affine
from tests.waiting import wait_for


def affine_inputs(module: Any, x: np.ndarray[Any, Any]) -> tuple[Any, Any, np.ndarray[Any, Any]]:
    over_grpc = grpcclient.InferInput("input", list(x.shape), "FP32")
    over_grpc.set_data_from_numpy(x)
    over_http = httpclient.InferInput("input", list(x.shape), "FP32")
    over_http.set_data_from_numpy(x, binary_data=True)
    with torch.no_grad():
        expected = module(torch.from_numpy(x)).numpy()
    return over_grpc, over_http, expected


def test_envoys_port_serves_every_grpc_method_and_uvicorn_rest(envoy_platform: EnvoyPlatform) -> None:
    platform = envoy_platform
    published = platform.published_at_start
    assert published.pid != platform.process.pid  # Envoy's
    model = Affine()
    platform.register(model, torch.randn(2, 4), "affine")
    platform.deploy("affine", "affine@latest")  # the management API, through Envoy
    assert [d.name for d in platform.inference.list_deployments("lab")] == ["projects/lab/deployments/affine"]
    x = np.random.default_rng(3).standard_normal((3, 4)).astype(np.float32)
    over_grpc, over_http, expected = affine_inputs(model, x)
    client = grpcclient.InferenceServerClient(url=platform.address)
    result = client.infer("affine", [over_grpc], request_id="g1")
    np.testing.assert_allclose(result.as_numpy("output"), expected, rtol=1e-6, atol=1e-6)
    assert result.get_response().id == "g1"
    assert client.is_server_live()  # an empty request message
    assert client.is_server_ready()
    assert client.is_model_ready("affine")
    assert [i["name"] for i in client.get_model_metadata("affine", as_json=True)["inputs"]] == ["input"]
    client.close()
    rest = httpclient.InferenceServerClient(url=published.http)
    result = rest.infer("affine", [over_http], request_id="h1")
    np.testing.assert_allclose(result.as_numpy("output"), expected, rtol=1e-6, atol=1e-6)
    assert rest.is_server_live()
    rest.close()
    with grpc.insecure_channel(platform.address) as channel:
        checks = health_pb2_grpc.HealthStub(channel)
        assert (
            checks.Check(health_pb2.HealthCheckRequest(), timeout=10).status == health_pb2.HealthCheckResponse.SERVING
        )
        services = ProtoReflectionDescriptorDatabase(channel).get_services()
        assert set(services) >= {"inference.GRPCInferenceService", "atelier.inference.v1.InferenceService"}
    with pytest.raises(urllib.error.HTTPError) as not_grpc:
        urllib.request.urlopen(f"http://{platform.address}/v2/health/live", timeout=10)
    assert not_grpc.value.code == 415


def test_bad_input_gets_tritons_words_through_envoy(envoy_platform: EnvoyPlatform) -> None:
    platform = envoy_platform
    platform.register(Affine(), torch.randn(2, 4), "affine")
    platform.deploy("affine", "affine@latest")
    wrong = grpcclient.InferInput("input", [2, 5], "FP32")
    wrong.set_data_from_numpy(np.zeros((2, 5), np.float32))
    client = grpcclient.InferenceServerClient(url=platform.address)
    with pytest.raises(InferenceServerException) as refused:
        client.infer("affine", [wrong])
    client.close()
    assert refused.value.status() == "StatusCode.INVALID_ARGUMENT"
    assert "unexpected shape for input 'input' for model 'affine'" in refused.value.message()


def test_a_stream_through_envoy_and_its_calls_counted(envoy_platform: EnvoyPlatform) -> None:
    platform = envoy_platform
    model = Affine()
    platform.register(model, torch.randn(2, 4), "affine")
    platform.deploy("affine", "affine@latest")
    stream = Stream(grpcclient.InferenceServerClient(url=platform.address))
    xs = [np.full((1, 4), i, np.float32) for i in range(4)]
    for i, x in enumerate(xs):
        stream.send("affine", [affine_inputs(model, x)[0]], f"s{i}")
    got = {}
    for _ in xs:
        request_id, result, error = stream.next()
        assert error is None, error
        got[request_id] = result.as_numpy("output")
    stream.close()
    for i, x in enumerate(xs):
        np.testing.assert_allclose(got[f"s{i}"], affine_inputs(model, x)[2], rtol=1e-6, atol=1e-6)
    metrics = urllib.request.urlopen(f"http://{platform.published_at_start.metrics}/metrics", timeout=10).read()
    streams = [
        sample.value
        for family in text_string_to_metric_families(metrics.decode())
        for sample in family.samples
        if sample.name == "grpc_server_started_total" and sample.labels.get("grpc_method") == "ModelStreamInfer"
    ]
    assert streams == [1.0]


def test_sigterm_stops_envoy_and_the_service(envoy_platform: EnvoyPlatform) -> None:
    process = envoy_platform.process
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=60) == 0
    pid = envoy_platform.published_at_start.pid
    assert pid is not None
    wait_for(lambda: not Path(f"/proc/{pid}").exists(), "Envoy's exit", timeout=30)


def test_grpc_aio_serves_the_grpc_port_from_the_services_own_process(
    serve: Callable[[Callable[[], Any]], str], tmp_path: Path
) -> None:
    home = tmp_path / "home"
    data, registry = start_data_and_registry(serve, home)
    settings = {
        "ATELIER_INFERENCE_GRPC_SERVER": "grpc.aio",
        "ATELIER_INFERENCE_DATA_ADDRESS": data,
        "ATELIER_INFERENCE_REGISTRY_ADDRESS": registry,
    }
    with inference_in_envoy(home, tmp_path / "inference.log", **settings) as (process, published):
        assert published.pid == process.pid  # no Envoy
        client = grpcclient.InferenceServerClient(url=published.address)
        assert client.is_server_live()
        client.close()
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 0


def test_a_service_that_cannot_start_ends_envoy_and_says_so(tmp_path: Path) -> None:
    env = envoy_environment(tmp_path, ATELIER_INFERENCE_DATABASE_URL="postgresql://nobody@127.0.0.1:1/none")
    done = subprocess.run(
        [sys.executable, "-m", "services.inference"], cwd=tmp_path, env=env, capture_output=True, timeout=120
    )
    assert done.returncode == 1
    output = done.stdout.decode() + done.stderr.decode()
    assert "the inference service did not start" in output
    assert "Envoy exited while starting the inference service" in output
