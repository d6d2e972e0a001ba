"""schemathesis against the gateway's `/openapi.json`: requests generated from the document for every
operation, sent to the in-process app with every service of the stack really behind it; no answer is a
5xx and every answer matches the document (status, content type, headers, body schema)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.core.result import Ok
from schemathesis.generation import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from gateway.app import create_app
from gateway.settings import GatewaySettings
from gateway.upstream import Upstreams
from tests.integration.gateway.conftest import Stack

EXAMPLES_PER_OPERATION = 10
"""Valid requests (as the document describes them) per operation: 1,010 in all."""
INVALID_EXAMPLES_PER_OPERATION = 4
"""Requests that break the document per operation (wrong types, missing parts): 4xx, never 5xx."""
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]


@pytest.fixture
def every_service(serve: Callable[[Callable[[], Any]], str], stack: Stack, tmp_path: Path) -> dict[str, str]:
    """The stack fixture's services plus inference, monitor and IAM (access control off), all real."""
    from gateway.iam.server import build as build_iam
    from gateway.iam.settings import IamSettings
    from services.monitor.server import build as build_monitor
    from services.monitor.settings import MonitorSettings
    from tests.integration.inference.conftest import start_inference

    home = tmp_path / "home"
    inference = start_inference(serve, home, stack.addresses["data"], stack.addresses["registry"])
    monitor = serve(lambda: build_monitor(MonitorSettings(home=home, database_url=f"sqlite:///{tmp_path / 'm.db'}")))
    iam = serve(lambda: build_iam(IamSettings(home=tmp_path / "iam", auth="off", shutdown_grace_seconds=0.5)))
    return {**stack.addresses, "inference": inference, "monitor": monitor, "iam": iam}


def test_generated_requests_get_no_5xx_and_answers_match_the_document(
    every_service: dict[str, str], tmp_path: Path
) -> None:
    home = tmp_path / "home"
    app = create_app(GatewaySettings(home=home), Upstreams(home, every_service))
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    sent: list[str] = []
    failures: list[str] = []
    operations = [result.ok() for result in schema.get_all_operations() if isinstance(result, Ok)]
    assert len(operations) == len(list(schema.get_all_operations()))  # every operation's schema resolves
    runs = [
        (operation, mode, examples)
        for operation in operations
        for mode, examples in (
            (GenerationMode.POSITIVE, EXAMPLES_PER_OPERATION),
            (GenerationMode.NEGATIVE, INVALID_EXAMPLES_PER_OPERATION),
        )
    ]
    for operation, mode, examples in runs:
        try:
            sent.extend(exercise(operation, mode, examples))
        except Exception as error:  # noqa: BLE001 - every operation's failure is reported together
            failures.append(f"{mode.value} {operation.label}: {str(error)[:1500]}")
    assert not failures, "\n\n".join(failures)
    valid = [label for label in sent if label.startswith(GenerationMode.POSITIVE.value)]
    assert len(valid) >= 1000
    assert len(set(valid)) == len(operations)  # every operation was called


def exercise(operation: Any, mode: GenerationMode, examples: int) -> list[str]:
    """Send `examples` generated requests to one operation, each answer checked; the labels of those sent."""
    sent: list[str] = []

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        derandomize=True,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    def check(case: Any) -> None:
        sent.append(f"{mode.value} {operation.label}")
        case.call_and_validate(checks=CHECKS, headers={"X-Request-Timeout": "10"})

    check()
    return sent
