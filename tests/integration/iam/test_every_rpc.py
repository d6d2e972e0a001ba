"""Every RPC of every service, called with no token, a revoked one, an expired one and one of a
principal with no role in the project the request names, is refused before its handler runs.

Generated from the service descriptors: a new RPC is covered without touching this test (and one
missing from the access table is refused for everyone, which test_access_table.py reports)."""

from __future__ import annotations

import functools
import importlib
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import descriptor, message_factory, timestamp_pb2

from atelier.iam.v1 import iam_service_pb2 as pb
from atelier.runtime.access import RULES, Permission
from gateway.descriptors import service_descriptors
from tests.integration.iam.conftest import Iam, secured

KSERVE = importlib.import_module("atelier.inference.protocol.grpc_service_pb2").DESCRIPTOR.services_by_name[
    "GRPCInferenceService"
]
OWNERS = {
    "data": "data",
    "registry": "registry",
    "scheduler": "scheduler",
    "inference": "inference",
    "monitor": "monitor",
}


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


@pytest.fixture
def stack(serve: Callable[[Callable[[], Any]], str], tmp_path: Path, iam: Iam) -> Iterator[dict[str, grpc.Channel]]:
    from services.data.server import build as data
    from services.data.settings import DataSettings
    from services.inference.server import build as inference
    from services.inference.settings import InferenceSettings
    from services.monitor.server import build as monitor
    from services.monitor.settings import MonitorSettings
    from services.registry.server import build as registry
    from services.registry.settings import RegistrySettings
    from services.scheduler.server import build as scheduler
    from services.scheduler.settings import SchedulerSettings

    def home(name: str) -> Path:
        return tmp_path / name

    data_settings = secured(DataSettings, home("data"), iam, object_store=str(tmp_path / "objects"))
    channels = {"iam": grpc.insecure_channel(iam.address)}
    addresses = {"data_address": serve(lambda: data(data_settings))}
    channels["data"] = grpc.insecure_channel(addresses["data_address"])
    addresses["registry_address"] = serve(
        lambda: registry(secured(RegistrySettings, home("registry"), iam, **addresses))
    )
    addresses["monitor_address"] = serve(lambda: monitor(secured(MonitorSettings, home("monitor"), iam, **addresses)))
    built: dict[str, tuple[Callable[[Any], Any], Any]] = {
        "scheduler": (scheduler, secured(SchedulerSettings, home("scheduler"), iam, **addresses)),
        "inference": (inference, secured(InferenceSettings, home("inference"), iam, http_port=-1, **addresses)),
    }
    channels["registry"] = grpc.insecure_channel(addresses["registry_address"])
    channels["monitor"] = grpc.insecure_channel(addresses["monitor_address"])
    for name, (build, settings) in built.items():
        channels[name] = grpc.insecure_channel(serve(functools.partial(build, settings)))
    seed_deployment(built["inference"][1].home)
    yield channels
    for channel in channels.values():
        channel.close()


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


def test_every_rpc_refuses_missing_revoked_expired_and_wrong_project_tokens(
    stack: dict[str, grpc.Channel], iam: Iam
) -> None:
    outsider = iam.user("outsider", {"elsewhere": 3})
    revoked = iam.user("gone", {"vision": 3})
    name = iam.call("ListTokens", pb.ListTokensRequest(parent="users/gone")).tokens[0].name
    iam.call("RevokeToken", pb.RevokeTokenRequest(name=name))
    soon = timestamp_pb2.Timestamp()
    soon.FromDatetime(datetime.now(UTC) + timedelta(seconds=1))
    iam.user("brief", {"vision": 3})
    expired = iam.token("users/brief", expire_time=soon)
    time.sleep(1.2)

    checked = 0
    for method in methods():
        rule = RULES[path(method)]
        if rule.permission is Permission.PUBLIC:
            continue
        channel = stack[owner(method)]
        request = request_naming(method, "vision")
        for token, why in ((None, "needs credentials"), (revoked, "revoked"), (expired, "expired")):
            assert refusal(channel, method, request, token).startswith("UNAUTHENTICATED"), (path(method), why)
            assert why in refusal(channel, method, request, token), path(method)
        if rule.permission is not Permission.AUTHENTICATED:
            assert refusal(channel, method, request, outsider).startswith("PERMISSION_DENIED"), path(method)
        checked += 1
    assert checked > 80
