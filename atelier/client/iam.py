"""Client of the IAM service (served by the gateway): identities, tokens, members, the audit log."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime

import grpc

from atelier.client.channel import ServiceClient, connect
from atelier.iam.v1 import iam_service_pb2 as pb
from atelier.iam.v1 import iam_service_pb2_grpc
from atelier.iam.v1 import resources_pb2 as res


class IamClient(ServiceClient):
    """Typed calls of `atelier.iam.v1.IamService`."""

    service = "IAM"

    def __init__(self, channel: grpc.Channel, timeout: float = 30.0, address: str = "") -> None:
        super().__init__(channel, timeout, address)
        self.stub = iam_service_pb2_grpc.IamServiceStub(channel)

    @classmethod
    def at(cls, address: str) -> IamClient:
        return cls(connect(address), address=address)

    def authenticate(self, token: str) -> res.Identity:
        return self.call(self.stub.Authenticate, pb.AuthenticateRequest(token=token))

    def create_user(
        self, user_id: str, display_name: str = "", cluster_roles: list[int] | None = None
    ) -> res.Principal:
        user = res.Principal(display_name=display_name, cluster_roles=cluster_roles or [])  # type: ignore[arg-type]
        return self.call(self.stub.CreateUser, pb.CreateUserRequest(user_id=user_id, user=user))

    def create_service_account(
        self, account_id: str, display_name: str = "", cluster_roles: list[int] | None = None
    ) -> res.Principal:
        account = res.Principal(display_name=display_name, cluster_roles=cluster_roles or [])  # type: ignore[arg-type]
        request = pb.CreateServiceAccountRequest(service_account_id=account_id, service_account=account)
        return self.call(self.stub.CreateServiceAccount, request)

    def list_principals(self) -> Iterator[res.Principal]:
        return self.pages(self.stub.ListPrincipals, pb.ListPrincipalsRequest(), "principals")

    def create_token(
        self,
        principal: str,
        display_name: str = "",
        expire_time: datetime | None = None,
        scope_project: str = "",
        scope_role: int = 0,
    ) -> pb.CreateTokenResponse:
        token = res.Token(display_name=display_name, scope_project=scope_project, scope_role=scope_role)  # type: ignore[arg-type]
        if expire_time is not None:
            token.expire_time.FromDatetime(expire_time)
        return self.call(self.stub.CreateToken, pb.CreateTokenRequest(parent=principal, token=token))

    def list_tokens(self, principal: str, show_inactive: bool = False) -> list[res.Token]:
        request = pb.ListTokensRequest(parent=principal, show_inactive=show_inactive)
        return list(self.call(self.stub.ListTokens, request).tokens)

    def revoke_token(self, name: str) -> res.Token:
        return self.call(self.stub.RevokeToken, pb.RevokeTokenRequest(name=name))

    def add_member(self, project: str, principal: str, role: int) -> res.Member:
        member = res.Member(principal=principal, role=role)  # type: ignore[arg-type]
        return self.call(self.stub.CreateMember, pb.CreateMemberRequest(parent=f"projects/{project}", member=member))

    def set_role(self, project: str, member_id: str, role: int) -> res.Member:
        member = res.Member(name=f"projects/{project}/members/{member_id}", role=role)  # type: ignore[arg-type]
        request = pb.UpdateMemberRequest(member=member)
        request.update_mask.paths.append("role")
        return self.call(self.stub.UpdateMember, request)

    def remove_member(self, project: str, member_id: str) -> None:
        self.call(self.stub.DeleteMember, pb.DeleteMemberRequest(name=f"projects/{project}/members/{member_id}"))

    def list_members(self, project: str) -> list[res.Member]:
        return list(self.call(self.stub.ListMembers, pb.ListMembersRequest(parent=f"projects/{project}")).members)

    def audit_events(self, project: str = "", principal: str = "", limit: int = 100) -> list[res.AuditEvent]:
        request = pb.ListAuditEventsRequest(
            project=f"projects/{project}" if project else "", principal=principal, page_size=limit
        )
        return list(self.call(self.stub.ListAuditEvents, request).events)
