"""Behind Envoy (the default), a KServe call continues its caller's trace: the service exports the call's
span and the request's under it over OTLP, and its log lines carry the trace id."""

from __future__ import annotations

import json
import secrets
import time

import numpy as np
import pytest
import torch
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from tests.e2e.test_tracing_export import Receiver, Span, receiver  # noqa: F401 - the fixture
from tests.integration.inference.conftest import EnvoyPlatform
from tests.integration.inference.models import Affine


@pytest.fixture
def envoy_variables(receiver: tuple[Receiver, str]) -> dict[str, str]:  # noqa: F811
    return {
        "OTEL_EXPORTER_OTLP_ENDPOINT": receiver[1],
        "OTEL_EXPORTER_OTLP_INSECURE": "true",
        "OTEL_BSP_SCHEDULE_DELAY": "100",
        "ATELIER_INFERENCE_LOG_FORMAT": "json",
    }


def spans_of(sink: Receiver, trace_id: str, wanted: int) -> list[Span]:
    deadline = time.monotonic() + 30
    while True:
        with sink.lock:
            found = [s for s in sink.tree if s.trace_id == trace_id]
        if len(found) >= wanted or time.monotonic() > deadline:
            return found
        time.sleep(0.1)


def test_a_call_through_envoy_continues_the_callers_trace(
    envoy_platform: EnvoyPlatform,
    receiver: tuple[Receiver, str],  # noqa: F811
) -> None:
    sink, _ = receiver
    platform = envoy_platform
    platform.register(Affine(), torch.randn(2, 4), "affine")
    platform.deploy("affine", "affine@latest")
    trace_id, caller = secrets.token_hex(16), secrets.token_hex(8)
    traceparent = {"traceparent": f"00-{trace_id}-{caller}-01"}
    x = grpcclient.InferInput("input", [1, 4], "FP32")
    x.set_data_from_numpy(np.ones((1, 4), np.float32))
    wrong = grpcclient.InferInput("input", [1, 5], "FP32")
    wrong.set_data_from_numpy(np.ones((1, 5), np.float32))
    client = grpcclient.InferenceServerClient(url=platform.address)
    assert client.infer("affine", [x], request_id="t1", headers=traceparent).get_response().id == "t1"
    with pytest.raises(InferenceServerException):  # a refused call logs a line
        client.infer("affine", [wrong], request_id="t2", headers=traceparent)
    client.close()

    spans = spans_of(sink, trace_id, 4)
    calls = [s for s in spans if s.name == "/inference.GRPCInferenceService/ModelInfer"]
    assert [(s.service, s.parent_id) for s in calls] == [("atelier-inference", caller)] * 2
    requests = [s for s in spans if s.name == "inference.request"]
    assert len(requests) == 2
    assert {s.parent_id for s in requests} == {s.span_id for s in calls}
    logged = [json.loads(line) for line in (platform.home.parent / "inference.log").read_text().splitlines()
              if line.startswith("{")]  # fmt: skip
    assert any(line.get("trace_id") == trace_id for line in logged), "no log line carries the trace id"
