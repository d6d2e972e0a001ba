"""Tokens and roles end to end: a data service with auth on asks the IAM service who calls."""

from __future__ import annotations

import os
import stat
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import timestamp_pb2

from atelier.data.v1 import data_service_pb2 as data_pb
from atelier.data.v1 import data_service_pb2_grpc, resources_pb2
from atelier.iam.v1 import iam_service_pb2 as pb
from atelier.iam.v1 import resources_pb2 as res
from tests.integration.iam.conftest import Iam, secured

Role = res.Role


@pytest.fixture
def data(serve: Callable[[Callable[[], Any]], str], tmp_path: Path, iam: Iam) -> Any:
    from services.data.server import build
    from services.data.settings import DataSettings

    settings = secured(DataSettings, tmp_path, iam, object_store=str(tmp_path / "objects"))
    address = serve(lambda: build(settings))
    channel = grpc.insecure_channel(address)
    yield data_service_pb2_grpc.DataServiceStub(channel)
    channel.close()


def call(method: Any, request: Any, token: str | None) -> Any:
    metadata = (("authorization", f"Bearer {token}"),) if token else ()
    return method(request, metadata=metadata, timeout=10)


def refused(method: Any, request: Any, token: str | None) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as caught:
        call(method, request, token)
    return caught.value


def create_project(data: Any, iam: Iam, project: str) -> None:
    call(data.CreateProject, data_pb.CreateProjectRequest(project_id=project), iam.admin_token)


def test_the_first_admin_token_is_written_for_its_owner_only(iam: Iam, tmp_path: Path) -> None:
    path = tmp_path / "iam" / "credentials"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    identity = iam.call("Authenticate", pb.AuthenticateRequest(token=iam.admin_token))
    assert identity.principal == "users/admin"
    assert res.ClusterRole.CLUSTER_ROLE_ADMIN in identity.cluster_roles


def test_principals_are_listed_by_a_known_kind(iam: Iam) -> None:
    iam.user("ana")
    users = iam.call("ListPrincipals", pb.ListPrincipalsRequest(kind=res.PrincipalKind.PRINCIPAL_KIND_USER))
    assert "users/ana" in [p.name for p in users.principals]
    with pytest.raises(grpc.RpcError) as caught:
        iam.call("ListPrincipals", pb.ListPrincipalsRequest(kind=99))  # type: ignore[arg-type]
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert caught.value.details() == "kind is 99; allowed: PRINCIPAL_KIND_USER, PRINCIPAL_KIND_SERVICE_ACCOUNT"


def test_roles_decide_what_a_user_may_do_in_a_project(data: Any, iam: Iam) -> None:
    create_project(data, iam, "vision")
    alice = iam.user("alice", {"vision": Role.ROLE_MEMBER})
    viewer = iam.user("vic", {"vision": Role.ROLE_VIEWER})
    dataset = data_pb.CreateDatasetRequest(
        parent="projects/vision", dataset_id="digits", dataset=resources_pb2.Dataset()
    )

    error = refused(data.CreateDataset, dataset, viewer)
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "users/vic is only viewer in project 'vision'; CreateDataset needs member" in str(error.details())

    call(data.CreateDataset, dataset, alice)
    listed = call(data.ListDatasets, data_pb.ListDatasetsRequest(parent="projects/vision"), viewer)
    assert [d.name for d in listed.datasets] == ["projects/vision/datasets/digits"]

    delete = data_pb.DeleteDatasetRequest(name="projects/vision/datasets/digits")
    error = refused(data.DeleteDataset, delete, alice)
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "needs admin" in str(error.details())


def test_missing_expired_revoked_and_wrong_project_tokens_are_refused(data: Any, iam: Iam) -> None:
    create_project(data, iam, "vision")
    create_project(data, iam, "audio")
    request = data_pb.ListDatasetsRequest(parent="projects/vision")

    error = refused(data.ListDatasets, request, None)
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED
    assert "atelier login" in str(error.details())

    assert refused(data.ListDatasets, request, "atl_0123456789abcdef_guess").code() == grpc.StatusCode.UNAUTHENTICATED

    outsider = iam.user("olga", {"audio": Role.ROLE_ADMIN})
    error = refused(data.ListDatasets, request, outsider)
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "users/olga has no role in project 'vision'" in str(error.details())

    bob = iam.user("bob", {"vision": Role.ROLE_VIEWER})
    call(data.ListDatasets, request, bob)
    revoked = iam.call("ListTokens", pb.ListTokensRequest(parent="users/bob"), bob).tokens[0]
    iam.call("RevokeToken", pb.RevokeTokenRequest(name=revoked.name), bob)
    error = refused(data.ListDatasets, request, bob)
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED
    assert "revoked" in str(error.details())

    soon = timestamp_pb2.Timestamp()
    soon.FromDatetime(datetime.now(UTC) + timedelta(seconds=1))
    short = iam.token("users/olga", expire_time=soon)
    iam.call(
        "CreateMember",
        pb.CreateMemberRequest(
            parent="projects/vision", member=res.Member(principal="users/olga", role=Role.ROLE_VIEWER)
        ),
    )
    call(data.ListDatasets, request, short)
    time.sleep(1.2)
    error = refused(data.ListDatasets, request, short)
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED
    assert "expired" in str(error.details())


def test_a_project_scoped_token_acts_only_in_its_project(data: Any, iam: Iam) -> None:
    create_project(data, iam, "vision")
    create_project(data, iam, "audio")
    iam.user("job-runner", {"vision": Role.ROLE_ADMIN, "audio": Role.ROLE_ADMIN})
    later = timestamp_pb2.Timestamp()
    later.FromDatetime(datetime.now(UTC) + timedelta(hours=1))
    scoped = iam.token(
        "users/job-runner", scope_project="projects/vision", scope_role=Role.ROLE_MEMBER, expire_time=later
    )
    call(data.ListDatasets, data_pb.ListDatasetsRequest(parent="projects/vision"), scoped)
    error = refused(data.ListDatasets, data_pb.ListDatasetsRequest(parent="projects/audio"), scoped)
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "scoped to project 'vision'" in str(error.details())
    error = refused(data.DeleteDataset, data_pb.DeleteDatasetRequest(name="projects/vision/datasets/x"), scoped)
    assert "needs admin" in str(error.details())


def test_writes_reach_the_audit_log_and_only_admins_read_it(data: Any, iam: Iam) -> None:
    create_project(data, iam, "vision")
    alice = iam.user("alice", {"vision": Role.ROLE_MEMBER})
    call(
        data.CreateDataset,
        data_pb.CreateDatasetRequest(parent="projects/vision", dataset_id="digits", dataset=resources_pb2.Dataset()),
        alice,
    )
    request = pb.ListAuditEventsRequest(project="projects/vision")
    deadline = time.monotonic() + 10
    events: list[Any] = []
    while time.monotonic() < deadline:
        events = [e for e in iam.call("ListAuditEvents", request).events if e.service == "data"]
        if len(events) >= 2:
            break
        time.sleep(0.2)
    methods = [(e.principal, e.method.rsplit("/", 1)[-1], e.code, e.resource) for e in events]
    assert methods == [
        ("users/alice", "CreateDataset", "OK", "projects/vision"),
        ("users/admin", "CreateProject", "OK", "vision"),
    ]
    assert all(e.peer for e in events)
    error = refused(iam.stub.ListAuditEvents, request, alice)
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED


def test_writes_are_recorded_as_the_caller_whatever_the_request_claims(
    serve: Callable[[Callable[[], Any]], str], tmp_path: Path, iam: Iam
) -> None:
    from atelier.registry.v1 import registry_service_pb2 as reg_pb
    from atelier.registry.v1 import registry_service_pb2_grpc
    from atelier.registry.v1 import resources_pb2 as reg
    from services.registry.server import build
    from services.registry.settings import RegistrySettings

    # A run without dataset inputs never asks the data service.
    settings = secured(RegistrySettings, tmp_path / "registry", iam, data_address="127.0.0.1:1")
    registry = registry_service_pb2_grpc.RegistryServiceStub(grpc.insecure_channel(serve(lambda: build(settings))))
    alice = iam.user("alice", {"vision": Role.ROLE_MEMBER})
    run = call(
        registry.CreateRun,
        reg_pb.CreateRunRequest(parent="projects/vision/experiments/digits", run=reg.Run(user="mallory")),
        alice,
    )
    assert run.user == "alice"


@pytest.mark.parametrize(
    ("method", "request_", "field"),
    [
        (
            "CreateToken",
            pb.CreateTokenRequest(
                parent="users/admin", token=res.Token(expire_time=timestamp_pb2.Timestamp(seconds=2**40))
            ),
            "token.expire_time",
        ),
        ("ListAuditEvents", pb.ListAuditEventsRequest(end_time=timestamp_pb2.Timestamp(seconds=-(2**40))), "end_time"),
        (
            "WriteAuditEvents",
            pb.WriteAuditEventsRequest(events=[res.AuditEvent(time=timestamp_pb2.Timestamp(nanos=-1))]),
            "events[0].time",
        ),
    ],
)
def test_times_no_timestamp_may_hold_are_refused(iam: Iam, method: str, request_: Any, field: str) -> None:
    with pytest.raises(grpc.RpcError) as raised:
        iam.call(method, request_)
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert raised.value.details().startswith(f"{field} has seconds")
