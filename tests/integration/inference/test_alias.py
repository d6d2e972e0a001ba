"""A deployment of an alias follows it: the new version loads and warms up, traffic switches, the
old version drains; callers sending all along see no failure."""

from __future__ import annotations

import threading
from typing import Any

import numpy as np
import torch
import tritonclient.grpc as grpcclient

from tests.integration.inference.conftest import Platform
from tests.integration.inference.models import Affine

MODEL = "projects/lab/models/affine"


def shifted(bias: float) -> Affine:
    model = Affine()
    with torch.no_grad():
        model.linear.bias.add_(bias)
    return model


def test_moving_the_alias_switches_versions_with_no_failed_request(platform: Platform) -> None:
    models = {1: shifted(0.0), 2: shifted(100.0)}
    for model in models.values():
        platform.register(model, torch.randn(2, 4), "affine")
    platform.registry.set_alias(MODEL, "production", "v1")
    platform.deploy("affine", "affine@production", batching={"max_queue_delay_us": 2000})
    x = np.random.default_rng(4).standard_normal((1, 4)).astype(np.float32)
    with torch.no_grad():
        expected = {v: m(torch.from_numpy(x)).numpy() for v, m in models.items()}
    seen: list[tuple[str, Any]] = []
    failures: list[BaseException] = []
    switched = threading.Event()

    def send(client: Any) -> None:
        tensor = grpcclient.InferInput("input", [1, 4], "FP32")
        tensor.set_data_from_numpy(x)
        after_switch = 0
        for _ in range(20_000):  # bounded: stops 50 requests after the first one the new version answered
            try:
                result = client.infer("affine", [tensor])
            except Exception as error:  # noqa: BLE001 - every failure is what the test counts
                failures.append(error)
                continue
            seen.append((result.get_response().model_version, result.as_numpy("output")))
            if seen[-1][0] == "2":
                switched.set()
                after_switch += 1
                if after_switch >= 50:
                    return

    clients = [platform.triton() for _ in range(4)]
    senders = [threading.Thread(target=send, args=(c,)) for c in clients]
    for sender in senders:
        sender.start()
    while len(seen) < 20 and all(s.is_alive() for s in senders):
        threading.Event().wait(0.05)
    platform.registry.set_alias(MODEL, "production", "v2")
    for sender in senders:
        sender.join(timeout=120)
    assert switched.is_set()
    assert failures == []
    versions = [v for v, _ in seen]
    assert versions[0] == "1"
    assert versions[-1] == "2"
    for version, output in seen:
        np.testing.assert_allclose(output, expected[int(version)], rtol=1e-5)
    deployment = platform.inference.get("projects/lab/deployments/affine")
    assert deployment.model_version == f"{MODEL}/versions/v2"
    assert deployment.model == "affine@production"
    stats = clients[0].get_inference_statistics("affine")
    assert sorted(s.version for s in stats.model_stats) == ["1", "2"]
    assert all(s.inference_stats.fail.count == 0 for s in stats.model_stats)
    for client in clients:
        client.close()


def test_latest_follows_new_versions_and_a_pinned_version_stays(platform: Platform) -> None:
    platform.register(Affine(), torch.randn(2, 4), "affine")
    platform.deploy("pinned", "affine@v1")
    platform.deploy("newest", "affine@latest")
    platform.register(shifted(1.0), torch.randn(2, 4), "affine")
    client = platform.triton()
    for _ in range(600):  # the service checks every 0.2 s in these tests
        if client.get_model_metadata("newest").versions == ["2"]:
            break
        threading.Event().wait(0.05)
    assert client.get_model_metadata("newest").versions == ["2"]
    assert client.get_model_metadata("pinned").versions == ["1"]
    assert platform.inference.get("projects/lab/deployments/pinned").model_version == f"{MODEL}/versions/v1"
    client.close()
