"""Every RPC of every service, called with no token, a revoked one, an expired one and one of a
principal with no role in the project the request names, is refused before its handler runs.

Generated from the service descriptors: a new RPC is covered without touching this test (and one
missing from the access table is refused for everyone, which test_access_table.py reports)."""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import timestamp_pb2

from atelier.iam.v1 import iam_service_pb2 as pb
from atelier.runtime.access import RULES, Permission
from tests.integration.iam.calls import methods, owner, path, refusal, request_naming, seed_deployment
from tests.integration.iam.conftest import Iam, secured


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
