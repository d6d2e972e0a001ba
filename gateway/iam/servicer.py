"""The IAM service's gRPC handlers: thin over `Principals`, `Tokens` and `AuditLog`. Who may call
what is decided before a handler runs, by the runtime's access table like every other service."""

from __future__ import annotations

from typing import Any

from google.protobuf import empty_pb2

from atelier.errors import InvalidArgument, PermissionDenied
from atelier.iam.v1 import iam_service_pb2 as pb
from atelier.iam.v1 import iam_service_pb2_grpc
from atelier.iam.v1 import resources_pb2 as res
from atelier.names import parse_name
from atelier.runtime.auth import current_identity
from atelier.runtime.pagination import decode_token, encode_token, page_size
from atelier.runtime.server import BlockingRunner
from atelier.runtime.timestamps import optional_datetime, to_datetime
from gateway.iam.audit import AuditEvent, AuditLog
from gateway.iam.convert import audit_pb, identity_pb, member_pb, principal_pb, token_pb
from gateway.iam.identify import Identifier
from gateway.iam.principals import Principals, parse_principal
from gateway.iam.tokens import Tokens

Context = Any
Kind = res.PrincipalKind
_PRINCIPAL_FIELDS = {"display_name", "cluster_roles", "disabled"}


def _project(name: str, field: str) -> str:
    return parse_name(name, "projects/{project}", field)["project"]


def _mask(paths: list[str], allowed: set[str]) -> set[str]:
    unknown = sorted(set(paths) - allowed)
    if unknown or not paths:
        raise InvalidArgument(
            f"update_mask {','.join(paths) or '(empty)'}: allowed paths are {', '.join(sorted(allowed))}",
            metadata={"field": "update_mask"},
        )
    return set(paths)


class IamServicer(iam_service_pb2_grpc.IamServiceServicer):
    def __init__(
        self, principals: Principals, tokens: Tokens, identifier: Identifier, audit: AuditLog, run: BlockingRunner
    ) -> None:
        self.principals = principals
        self.tokens = tokens
        self.identifier = identifier
        self.audit = audit
        self.run = run

    async def CreateUser(self, request: pb.CreateUserRequest, context: Context) -> res.Principal:
        u = request.user
        created = await self.run(
            self.principals.create, Kind.PRINCIPAL_KIND_USER, request.user_id, u.display_name, list(u.cluster_roles)
        )
        return principal_pb(created)

    async def CreateServiceAccount(self, request: pb.CreateServiceAccountRequest, context: Context) -> res.Principal:
        a = request.service_account
        created = await self.run(
            self.principals.create,
            Kind.PRINCIPAL_KIND_SERVICE_ACCOUNT,
            request.service_account_id,
            a.display_name,
            list(a.cluster_roles),
        )
        return principal_pb(created)

    async def GetPrincipal(self, request: pb.GetPrincipalRequest, context: Context) -> res.Principal:
        return principal_pb(await self.run(self.principals.get, request.name))

    async def ListPrincipals(self, request: pb.ListPrincipalsRequest, context: Context) -> pb.ListPrincipalsResponse:
        limit = page_size(request.page_size)
        after = str(decode_token(request.page_token, ""))
        found = await self.run(self.principals.page, request.kind, after, limit + 1)
        token = encode_token(found[limit - 1].id) if len(found) > limit else ""
        return pb.ListPrincipalsResponse(principals=[principal_pb(p) for p in found[:limit]], next_page_token=token)

    async def UpdatePrincipal(self, request: pb.UpdatePrincipalRequest, context: Context) -> res.Principal:
        paths = _mask(list(request.update_mask.paths), _PRINCIPAL_FIELDS)
        p = request.principal
        updated = await self.run(
            self.principals.update,
            p.name,
            p.display_name if "display_name" in paths else None,
            list(p.cluster_roles) if "cluster_roles" in paths else None,
            p.disabled if "disabled" in paths else None,
        )
        return principal_pb(updated)

    async def CreateToken(self, request: pb.CreateTokenRequest, context: Context) -> pb.CreateTokenResponse:
        t = request.token
        caller = current_identity.get()
        if caller is not None and not caller.is_admin and caller.principal != request.parent and not t.scope_project:
            # A service issues other principals' tokens only for one project (a job's).
            raise PermissionDenied(f"{caller.principal} may issue tokens of {request.parent} only with a scope_project")
        expire = optional_datetime(t, "expire_time", "token.expire_time")
        token, secret = await self.run(
            self.tokens.create, request.parent, t.display_name, expire, t.scope_project, t.scope_role
        )
        return pb.CreateTokenResponse(token=token_pb(token), secret=secret)

    async def ListTokens(self, request: pb.ListTokensRequest, context: Context) -> pb.ListTokensResponse:
        found = await self.run(self.tokens.of_principal, request.parent, request.show_inactive)
        return pb.ListTokensResponse(tokens=[token_pb(t) for t in found])

    async def RevokeToken(self, request: pb.RevokeTokenRequest, context: Context) -> res.Token:
        return token_pb(await self.run(self.tokens.revoke, request.name))

    async def CreateMember(self, request: pb.CreateMemberRequest, context: Context) -> res.Member:
        project = _project(request.parent, "parent")
        m = request.member
        return member_pb(await self.run(self.principals.set_member, project, m.principal, m.role, True))

    async def UpdateMember(self, request: pb.UpdateMemberRequest, context: Context) -> res.Member:
        if request.update_mask.paths:
            _mask(list(request.update_mask.paths), {"role"})
        values = parse_name(request.member.name, "projects/{project}/members/{member}", "member.name")
        principal = await self.run(self.principals.get_by_id, values["member"])
        updated = await self.run(
            self.principals.set_member, values["project"], principal.name, request.member.role, False
        )
        return member_pb(updated)

    async def DeleteMember(self, request: pb.DeleteMemberRequest, context: Context) -> Any:
        await self.run(self.principals.remove_member, request.name)
        return empty_pb2.Empty()

    async def ListMembers(self, request: pb.ListMembersRequest, context: Context) -> pb.ListMembersResponse:
        members = await self.run(self.principals.members, _project(request.parent, "parent"))
        return pb.ListMembersResponse(members=[member_pb(m) for m in members])

    async def Authenticate(self, request: pb.AuthenticateRequest, context: Context) -> res.Identity:
        return identity_pb(await self.run(self.identifier.identify, request.token))

    async def WriteAuditEvents(
        self, request: pb.WriteAuditEventsRequest, context: Context
    ) -> pb.WriteAuditEventsResponse:
        events = [
            AuditEvent(
                to_datetime(e.time, f"events[{index}].time"),
                e.principal,
                e.method,
                e.project.removeprefix("projects/"),
                e.resource,
                e.peer,
                e.code,
                e.service,
            )
            for index, e in enumerate(request.events)
        ]
        return pb.WriteAuditEventsResponse(written=await self.run(self.audit.write, events))

    async def ListAuditEvents(self, request: pb.ListAuditEventsRequest, context: Context) -> pb.ListAuditEventsResponse:
        project = _project(request.project, "project") if request.project else ""
        if request.principal:
            parse_principal(request.principal, "principal")
        limit = page_size(request.page_size)
        before = int(decode_token(request.page_token, 0))
        start, end = optional_datetime(request, "start_time"), optional_datetime(request, "end_time")
        found = await self.run(self.audit.page, project, request.principal, start, end, before, limit + 1)
        token = encode_token(found[limit - 1].id) if len(found) > limit else ""
        return pb.ListAuditEventsResponse(events=[audit_pb(e) for e in found[:limit]], next_page_token=token)
