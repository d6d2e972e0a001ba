"""Generated from the descriptors: every annotated RPC has a route, and the OpenAPI document validates."""

from __future__ import annotations

from openapi_spec_validator import validate

from gateway.descriptors import http_rule, service_descriptors
from gateway.routes import RuleRoute
from tests.integration.gateway.conftest import Stack


def test_every_rpc_with_an_http_rule_has_a_route(stack: Stack) -> None:
    routed = {r.binding.rpc_path for r in stack.rest.app.routes if isinstance(r, RuleRoute)}  # type: ignore[attr-defined]
    annotated = {
        f"/{service.full_name}/{method.name}"
        for service in service_descriptors()
        for method in service.methods
        if http_rule(method) is not None
    }
    assert len(annotated) > 50
    assert annotated == routed


def test_the_openapi_document_validates_and_covers_every_route(stack: Stack) -> None:
    document = stack.rest.get("/openapi.json").json()
    validate(document)
    operations = {op["operationId"] for item in document["paths"].values() for op in item.values()}
    bindings = {r.binding.operation_id for r in stack.rest.app.routes if isinstance(r, RuleRoute)}  # type: ignore[attr-defined]
    assert operations == bindings
    job = document["components"]["schemas"]["atelier.scheduler.v1.Job"]["properties"]
    assert job["maxRetries"]["type"] == "integer"
    assert job["createTime"] == {"type": "string", "format": "date-time", "description": "When it was submitted."}
    assert stack.rest.get("/docs").status_code == 200


def test_the_openapi_document_carries_the_proto_comments(stack: Stack) -> None:
    document = stack.rest.get("/openapi.json").json()
    tags = {tag["name"]: tag.get("description", "") for tag in document["tags"]}
    assert tags["atelier.data.v1.DataService"].startswith("Dataset versioning over content-addressed")
    create = document["paths"]["/v1/projects"]["post"]
    assert create["description"].startswith("Creates a project.\n\n/atelier.data.v1.DataService/CreateProject")
    job = document["components"]["schemas"]["atelier.scheduler.v1.Job"]
    assert job["properties"]["maxRetries"]["description"] == "How many times a failed attempt is retried."
    assert "lint" not in str(document).replace("buf lint", "")  # buf's lint directives are not descriptions
    # Every RPC is commented in its proto, so every operation says what it does before its RPC path.
    undescribed = [
        op["operationId"]
        for item in document["paths"].values()
        for op in item.values()
        if "\n\n/" not in op["description"]
    ]
    assert not undescribed
