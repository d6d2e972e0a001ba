"""An IAM service and services with auth on, talking to it, in-process on 127.0.0.1."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest

from atelier.client.credentials import read_credentials
from atelier.iam.v1 import iam_service_pb2 as pb
from atelier.iam.v1 import iam_service_pb2_grpc
from atelier.iam.v1 import resources_pb2 as res


@dataclass
class Iam:
    address: str
    admin_token: str
    stub: iam_service_pb2_grpc.IamServiceStub

    def call(self, method: str, request: Any, token: str | None = None) -> Any:
        metadata = (("authorization", f"Bearer {token or self.admin_token}"),)
        return getattr(self.stub, method)(request, metadata=metadata, timeout=10)

    def user(self, user_id: str, roles: dict[str, Any] | None = None) -> str:
        """Create a user with roles in projects; returns a fresh token of it."""
        self.call("CreateUser", pb.CreateUserRequest(user_id=user_id, user=res.Principal(display_name=user_id)))
        for project, role in (roles or {}).items():
            self.call(
                "CreateMember",
                pb.CreateMemberRequest(
                    parent=f"projects/{project}", member=res.Member(principal=f"users/{user_id}", role=role)
                ),
            )
        return self.token(f"users/{user_id}")

    def token(self, parent: str, **fields: Any) -> str:
        created = self.call("CreateToken", pb.CreateTokenRequest(parent=parent, token=res.Token(**fields)))
        return str(created.secret)


@pytest.fixture
def iam(serve: Callable[[Callable[[], Any]], str], tmp_path: Path) -> Iterator[Iam]:
    from gateway.iam.server import build
    from gateway.iam.settings import IamSettings

    settings = IamSettings(home=tmp_path / "iam", auth="on", auth_cache_seconds=0, shutdown_grace_seconds=0.5)
    address = serve(lambda: build(settings))
    admin_token = read_credentials(tmp_path / "iam" / "credentials")["token"]
    with grpc.insecure_channel(address) as channel:
        yield Iam(address, admin_token, iam_service_pb2_grpc.IamServiceStub(channel))


def secured(settings_type: type, tmp_path: Path, iam: Iam, **fields: Any) -> Any:
    """Settings of a service with auth on, checking tokens with `iam` at once (no cache), with a
    service account of its own for the audit log."""
    account = f"svc-{settings_type.__name__.lower()}"
    iam.call(
        "CreateServiceAccount",
        pb.CreateServiceAccountRequest(
            service_account_id=account,
            service_account=res.Principal(cluster_roles=[res.ClusterRole.CLUSTER_ROLE_SERVICE]),
        ),
    )
    return settings_type(
        token=iam.token(f"serviceAccounts/{account}"),
        home=tmp_path / "home",
        auth="on",
        iam_address=iam.address,
        auth_cache_seconds=0,
        shutdown_grace_seconds=0.5,
        **fields,
    )
