"""The inference service inside Envoy (`http_server = "envoy"`), started as `python -m services.inference`
starts it: REST v2 and KServe's gRPC data plane on Envoy's port, every method on the gRPC port, and a
clean stop on SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from prometheus_client.parser import text_string_to_metric_families
from tritonclient.utils import InferenceServerException

from atelier.client import DataClient, RegistryClient
from atelier.client.inference import InferenceClient
from atelier.stack.addresses import PublishedAddress, address_file, read_address_file
from tests.integration.inference.conftest import Platform, Stream, start_data_and_registry
from tests.integration.inference.models import Affine

REPO = Path(__file__).resolve().parents[3]


class EnvoyPlatform(Platform):
    process: subprocess.Popen[bytes]
    published_at_start: PublishedAddress


def _wait_for(check: Callable[[], Any], what: str, timeout: float = 120.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.1)
    raise AssertionError(f"{what} did not happen in {timeout:.0f} s")


@pytest.fixture
def envoy_platform(
    serve: Callable[[Callable[[], Any]], str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[EnvoyPlatform]:
    home = tmp_path / "home"
    data, registry = start_data_and_registry(serve, home)
    published = address_file(home, "inference")
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("ATELIER_", "OTEL_"))},
        "PYTHONPATH": str(REPO),
        "ATELIER_HOME": str(home),
        "ATELIER_INFERENCE_HTTP_SERVER": "envoy",
        "ATELIER_INFERENCE_DATA_ADDRESS": data,
        "ATELIER_INFERENCE_REGISTRY_ADDRESS": registry,
        "ATELIER_INFERENCE_ADDRESS_FILE": str(published),
        "ATELIER_INFERENCE_ALIAS_POLL_SECONDS": "0.2",
        "ATELIER_INFERENCE_DRIFT_SAMPLE_RATE": "0",
        "ATELIER_INFERENCE_LOG_FORMAT": "text",
    }
    with (tmp_path / "inference.log").open("wb") as log:
        process = subprocess.Popen([sys.executable, "-m", "services.inference"], cwd=tmp_path, env=env,
                                   stdout=log, stderr=subprocess.STDOUT)  # fmt: skip

    def started() -> PublishedAddress | None:
        assert process.poll() is None, (tmp_path / "inference.log").read_text()[-3000:]
        return read_address_file(published)

    try:
        address = _wait_for(started, "the service's start")
        monkeypatch.setenv("ATELIER_DATA_ADDRESS", data)
        monkeypatch.setenv("ATELIER_REGISTRY_ADDRESS", registry)
        monkeypatch.setenv("ATELIER_PROJECT", "lab")
        made = EnvoyPlatform(
            DataClient.at(data), RegistryClient.at(registry), InferenceClient.at(address.address), address.address, home
        )
        made.process, made.published_at_start = process, address
        yield made
        for client in (made.data, made.registry, made.inference):
            client.close()
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=60)


def affine_inputs(module: Any, x: np.ndarray[Any, Any]) -> tuple[Any, Any, np.ndarray[Any, Any]]:
    over_grpc = grpcclient.InferInput("input", list(x.shape), "FP32")
    over_grpc.set_data_from_numpy(x)
    over_http = httpclient.InferInput("input", list(x.shape), "FP32")
    over_http.set_data_from_numpy(x, binary_data=True)
    with torch.no_grad():
        expected = module(torch.from_numpy(x)).numpy()
    return over_grpc, over_http, expected


def test_envoys_port_serves_grpc_and_rest_and_the_grpc_port_every_method(envoy_platform: EnvoyPlatform) -> None:
    platform = envoy_platform
    front = platform.published_at_start.http
    assert front
    assert front != platform.address
    model = Affine()
    platform.register(model, torch.randn(2, 4), "affine")
    platform.deploy("affine", "affine@latest")  # the management API, on the gRPC port
    x = np.random.default_rng(3).standard_normal((3, 4)).astype(np.float32)
    over_grpc, over_http, expected = affine_inputs(model, x)
    for url in (front, platform.address):
        client = grpcclient.InferenceServerClient(url=url)
        result = client.infer("affine", [over_grpc], request_id="g1")
        np.testing.assert_allclose(result.as_numpy("output"), expected, rtol=1e-6, atol=1e-6)
        assert result.get_response().id == "g1"
        assert client.is_server_live()  # an empty request message
        assert client.is_server_ready()
        assert client.is_model_ready("affine")
        assert [i["name"] for i in client.get_model_metadata("affine", as_json=True)["inputs"]] == ["input"]
        client.close()
    rest = httpclient.InferenceServerClient(url=front)
    result = rest.infer("affine", [over_http], request_id="h1")
    np.testing.assert_allclose(result.as_numpy("output"), expected, rtol=1e-6, atol=1e-6)
    assert rest.is_server_live()
    rest.close()


def test_bad_input_fails_alike_on_both_ports(envoy_platform: EnvoyPlatform) -> None:
    platform = envoy_platform
    platform.register(Affine(), torch.randn(2, 4), "affine")
    platform.deploy("affine", "affine@latest")
    wrong = grpcclient.InferInput("input", [2, 5], "FP32")
    wrong.set_data_from_numpy(np.zeros((2, 5), np.float32))
    answers = []
    for url in (platform.published_at_start.http, platform.address):
        client = grpcclient.InferenceServerClient(url=url)
        with pytest.raises(InferenceServerException) as refused:
            client.infer("affine", [wrong])
        answers.append((refused.value.status(), refused.value.message()))
        client.close()
    assert answers[0] == answers[1]
    assert answers[0][0] == "StatusCode.INVALID_ARGUMENT"
    assert "input" in answers[0][1]


def test_a_stream_through_envoy_and_its_calls_counted(envoy_platform: EnvoyPlatform) -> None:
    platform = envoy_platform
    model = Affine()
    platform.register(model, torch.randn(2, 4), "affine")
    platform.deploy("affine", "affine@latest")
    stream = Stream(grpcclient.InferenceServerClient(url=platform.published_at_start.http))
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
    _wait_for(lambda: not Path(f"/proc/{pid}").exists(), "Envoy's exit", timeout=30)


def test_a_service_that_cannot_start_ends_envoy_and_says_so(tmp_path: Path) -> None:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("ATELIER_", "OTEL_"))},
        "PYTHONPATH": str(REPO),
        "ATELIER_HOME": str(tmp_path),
        "ATELIER_INFERENCE_HTTP_SERVER": "envoy",
        "ATELIER_INFERENCE_DATABASE_URL": "postgresql://nobody@127.0.0.1:1/none",
        "ATELIER_INFERENCE_LOG_FORMAT": "text",
    }
    done = subprocess.run(
        [sys.executable, "-m", "services.inference"], cwd=tmp_path, env=env, capture_output=True, timeout=120
    )
    assert done.returncode == 1
    output = done.stdout.decode() + done.stderr.decode()
    assert "the inference service did not start" in output
    assert "Envoy exited while starting the inference service" in output
