"""A client process that does not trace does not load OpenTelemetry's gRPC instrumentation."""

from __future__ import annotations

import os
import subprocess
import sys

SCRIPT = (
    "import sys; from atelier.client.data import DataClient; DataClient.at('127.0.0.1:1'); "
    "print('opentelemetry.instrumentation.grpc' in sys.modules)"
)


def _loaded(**env: str) -> bool:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT], env={**clean, **env}, capture_output=True, text=True, check=True
    )
    return done.stdout.strip() == "True"


def test_without_an_exporter_channels_carry_no_trace_interceptor() -> None:
    assert not _loaded()


def test_with_an_exporter_channels_carry_the_trace_interceptor() -> None:
    assert _loaded(OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:4317")


def test_a_client_does_not_load_the_servers_access_rules() -> None:
    script = "import sys; from atelier.client.data import DataClient; print('atelier.runtime.auth' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"
