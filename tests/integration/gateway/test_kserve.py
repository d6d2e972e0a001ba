"""KServe v2 REST through the gateway: `/v2/...` passed to a real inference service's REST v2."""

from __future__ import annotations

import json
from collections.abc import Iterator

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient

from gateway.app import create_app
from gateway.settings import GatewaySettings
from gateway.upstream import Upstreams
from tests.integration.inference.conftest import Platform, platform  # noqa: F401  (the fixture)
from tests.integration.inference.models import Affine

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"


@pytest.fixture
def rest(platform: Platform) -> Iterator[TestClient]:  # noqa: F811
    """The gateway of the platform's home: it finds the inference service's REST v2 in its address file."""
    app = create_app(GatewaySettings(home=platform.home), Upstreams(platform.home))
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client


def test_health_metadata_and_errors_pass_through(platform: Platform, rest: TestClient) -> None:  # noqa: F811
    server = rest.get("/v2")
    assert server.status_code == 200
    assert server.json()["name"] == "atelier"
    assert rest.get("/v2/health/ready").status_code == 200
    assert rest.get("/v2/health/live").status_code == 200
    missing = rest.get("/v2/models/nothing", headers={"X-Request-Id": "req-7"})
    assert missing.status_code == 404
    assert "nothing" in missing.json()["error"]  # Triton's own error body, unchanged
    assert missing.headers["x-request-id"] == "req-7"
    unknown = rest.post("/v2/models/nothing/infer", json={"inputs": []})
    assert unknown.status_code in (400, 404), unknown.text
    assert "nothing" in unknown.json()["error"]


def test_a_binary_tensor_request_infers_through_the_gateway(platform: Platform, rest: TestClient) -> None:  # noqa: F811
    model = Affine()
    platform.register(model, torch.randn(2, 4), "affine")
    platform.deploy("affine", "affine@latest")
    x = np.random.default_rng(1).standard_normal((5, 4)).astype(np.float32)
    header = {
        "id": "r-1",
        "inputs": [
            {"name": "input", "shape": [5, 4], "datatype": "FP32", "parameters": {"binary_data_size": x.nbytes}}
        ],
        "outputs": [{"name": "output", "parameters": {"binary_data": False}}],
    }
    head = json.dumps(header).encode()
    answer = rest.post(
        "/v2/models/affine/infer",
        content=head + x.tobytes(),
        headers={
            "Inference-Header-Content-Length": str(len(head)),
            "Content-Type": "application/octet-stream",
            "traceparent": f"00-{TRACE_ID}-00f067aa0ba902b7-01",
        },
    )
    assert answer.status_code == 200, answer.text
    result = answer.json()
    assert (result["id"], result["model_name"]) == ("r-1", "affine")
    with torch.no_grad():
        expected = model(torch.from_numpy(x)).numpy()
    got = np.array(result["outputs"][0]["data"], dtype=np.float32).reshape(5, -1)
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-6)
    assert answer.headers["traceparent"].split("-")[1] == TRACE_ID


def test_without_the_inference_service_v2_is_a_503_naming_it(tmp_path: object) -> None:
    from pathlib import Path

    home = Path(str(tmp_path)) / "home"
    app = create_app(GatewaySettings(home=home), Upstreams(home, http_addresses={"inference": "127.0.0.1:1"}))
    with TestClient(app, raise_server_exceptions=False) as client:
        down = client.get("/v2/health/ready")
        assert down.status_code == 503
        error = down.json()["error"]
        assert error["status"] == "UNAVAILABLE"
        assert "inference service at 127.0.0.1:1" in error["message"]
        nowhere = TestClient(create_app(GatewaySettings(home=home), Upstreams(home)), raise_server_exceptions=False)
        with nowhere:
            absent = nowhere.get("/v2")
        assert absent.status_code == 503
        assert "inference" in absent.json()["error"]["message"]
