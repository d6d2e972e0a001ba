"""tritonclient (PyPI, unchanged) against deployments of registered TorchScript and torch.export models."""

from __future__ import annotations

import concurrent.futures

import numpy as np
import pytest
import torch
import tritonclient.grpc as grpcclient

from tests.integration.inference.conftest import Platform
from tests.integration.inference.models import Affine


@pytest.mark.parametrize("format", ["torchscript", "export"])
def test_infer_equals_the_model_offline(platform: Platform, format: str) -> None:
    model = Affine()
    version = platform.register(model, torch.randn(2, 4), "affine", format=format)
    platform.deploy("affine", "affine@latest")
    client = platform.triton()
    x = np.random.default_rng(1).standard_normal((5, 4)).astype(np.float32)
    tensor = grpcclient.InferInput("input", [5, 4], "FP32")
    tensor.set_data_from_numpy(x)
    result = client.infer("affine", [tensor], request_id="req-1")
    with torch.no_grad():
        expected = model(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(result.as_numpy("output"), expected, rtol=1e-6, atol=1e-6)
    response = result.get_response()
    assert response.id == "req-1"
    assert response.model_name == "affine"
    assert response.model_version == str(version.number)
    client.close()
