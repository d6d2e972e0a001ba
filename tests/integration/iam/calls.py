"""Calling any RPC of any service by its descriptor, with or without a token, as the access tests do."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import descriptor, message_factory

from atelier.runtime.access import RULES, Permission
from gateway.descriptors import service_descriptors

KSERVE = importlib.import_module("atelier.inference.protocol.grpc_service_pb2").DESCRIPTOR.services_by_name[
    "GRPCInferenceService"
]


def methods() -> list[descriptor.MethodDescriptor]:
    found = [m for s in service_descriptors() for m in s.methods]
    return [*found, *KSERVE.methods]


def path(method: descriptor.MethodDescriptor) -> str:
    return f"/{method.containing_service.full_name}/{method.name}"


def owner(method: descriptor.MethodDescriptor) -> str:
    package = method.containing_service.full_name.split(".")
    return "inference" if package[0] == "inference" else package[1]


def request_naming(method: descriptor.MethodDescriptor, project: str) -> Any:
    """An otherwise empty request whose rule field names `project`."""
    request = message_factory.GetMessageClass(method.input_type)()
    rule = RULES[path(method)]
    if rule.field:
        *parents, last = rule.field.split(".")
        target = request
        for part in parents:
            target = getattr(target, part)
        value = project if rule.field.endswith("project_id") else f"projects/{project}/x/y"
        if rule.lookup:
            value = "some-model"
        if rule.permission in (Permission.SELF, Permission.SELF_OR_SERVICE):
            value = "users/admin"
        setattr(target, last, value)
    return request


def invoke(channel: grpc.Channel, method: descriptor.MethodDescriptor, request: Any, token: str | None) -> None:
    response = message_factory.GetMessageClass(method.output_type)
    metadata = (("authorization", f"Bearer {token}"),) if token else ()
    kind = (method.client_streaming, method.server_streaming)
    factory: Callable[..., Any] = {
        (False, False): channel.unary_unary,
        (False, True): channel.unary_stream,
        (True, False): channel.stream_unary,
        (True, True): channel.stream_stream,
    }[kind]
    call = factory(
        path(method), request_serializer=type(request).SerializeToString, response_deserializer=response.FromString
    )
    argument = iter([request]) if method.client_streaming else request
    result = call(argument, metadata=metadata, timeout=10)
    if method.server_streaming:
        list(result)


def seed_deployment(home: Path) -> None:
    """A deployment named as the KServe requests name their model, in project vision (stored only:
    the service does not load it), so that refusals come from its project's roles."""
    from atelier.runtime.database import create_engine, default_url
    from services.inference.deployments import Deployments
    from services.inference.spec import DeploymentSpec

    engine = create_engine(default_url(home, "inference"))
    Deployments(engine).create(
        "vision", "some-model", "m@v1", "projects/vision/models/m/versions/v1", DeploymentSpec(), ""
    )
    engine.dispose()


def refusal(channel: grpc.Channel, method: descriptor.MethodDescriptor, request: Any, token: str | None) -> str:
    with pytest.raises(grpc.RpcError) as caught:
        invoke(channel, method, request, token)
    return f"{caught.value.code().name}: {caught.value.details()}"
