"""IAM domain objects to protobuf messages."""

from __future__ import annotations

from datetime import UTC, datetime

from atelier.iam.v1 import resources_pb2 as res
from atelier.runtime.timestamps import to_timestamp
from gateway.iam.audit import AuditEvent
from gateway.iam.identify import Identified
from gateway.iam.principals import Member, Principal
from gateway.iam.tokens import Token


def principal_pb(p: Principal) -> res.Principal:
    return res.Principal(
        name=p.name,
        kind=p.kind,  # type: ignore[arg-type]
        display_name=p.display_name,
        cluster_roles=p.cluster_roles,  # type: ignore[arg-type]
        create_time=to_timestamp(p.create_time),
        disabled=p.disabled,
    )


def token_pb(t: Token) -> res.Token:
    message = res.Token(
        name=t.name,
        display_name=t.display_name,
        create_time=to_timestamp(t.create_time),
        scope_project=f"projects/{t.scope_project}" if t.scope_project else "",
        scope_role=t.scope_role,  # type: ignore[arg-type]
    )
    for field, moment in (("expire_time", t.expire_time), ("last_use_time", t.last_use_time)):
        if moment is not None:
            getattr(message, field).CopyFrom(to_timestamp(moment))
    if t.revoke_time is not None:
        message.revoke_time.CopyFrom(to_timestamp(t.revoke_time))
    return message


def member_pb(m: Member) -> res.Member:
    return res.Member(
        name=m.name,
        principal=m.principal.name,
        role=m.role,  # type: ignore[arg-type]
        update_time=to_timestamp(m.update_time),
    )


def identity_pb(found: Identified) -> res.Identity:
    i = found.identity
    identity = res.Identity(
        principal=i.principal,
        cluster_roles=sorted(i.cluster_roles),  # type: ignore[arg-type]
        project_roles=dict(i.project_roles),  # type: ignore[arg-type]
        scope_project=f"projects/{i.scope_project}" if i.scope_project else "",
        scope_role=i.scope_role,  # type: ignore[arg-type]
        token=found.token,
    )
    if i.expires:
        identity.expire_time.FromDatetime(datetime.fromtimestamp(i.expires, UTC))
    return identity


def audit_pb(e: AuditEvent) -> res.AuditEvent:
    return res.AuditEvent(
        name=e.name,
        time=to_timestamp(e.time),
        principal=e.principal,
        method=e.method,
        project=f"projects/{e.project}" if e.project else "",
        resource=e.resource,
        peer=e.peer,
        code=e.code,
        service=e.service,
    )
