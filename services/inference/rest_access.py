"""Access control for REST v2: each route is checked as the gRPC method it mirrors, by the same
authorizer and access table as the gRPC side, so both protocols let in exactly the same callers.
A `/v2` path no rule here matches is refused (deny by default); health answers everyone."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, Request, Response

from atelier.errors import AtelierError, PermissionDenied
from atelier.inference.protocol import grpc_service_pb2 as v2
from atelier.runtime.auth import Authorizer, CallAccess
from services.inference.rest import HTTP_STATUS, error_response

PREFIX = "/inference.GRPCInferenceService/"
_MODEL = r"/v2/models/(?P<model>[^/]+)(?:/versions/[^/]+)?"
RULES: list[tuple[str, re.Pattern[str], str, Callable[[str], Any]]] = [
    ("GET", re.compile(r"/v2"), "ServerMetadata", lambda m: v2.ServerMetadataRequest()),
    ("GET", re.compile(r"/v2/models/stats"), "ModelStatistics", lambda m: v2.ModelStatisticsRequest()),
    ("POST", re.compile(r"/v2/repository/index"), "RepositoryIndex", lambda m: v2.RepositoryIndexRequest()),
    (
        "POST",
        re.compile(r"/v2/repository/models/(?P<model>[^/]+)/load"),
        "RepositoryModelLoad",
        lambda m: v2.RepositoryModelLoadRequest(model_name=m),
    ),
    (
        "POST",
        re.compile(r"/v2/repository/models/(?P<model>[^/]+)/unload"),
        "RepositoryModelUnload",
        lambda m: v2.RepositoryModelUnloadRequest(model_name=m),
    ),
    ("GET", re.compile(_MODEL), "ModelMetadata", lambda m: v2.ModelMetadataRequest(name=m)),
    ("GET", re.compile(_MODEL + "/ready"), "ModelReady", lambda m: v2.ModelReadyRequest(name=m)),
    ("GET", re.compile(_MODEL + "/config"), "ModelConfig", lambda m: v2.ModelConfigRequest(name=m)),
    ("GET", re.compile(_MODEL + "/stats"), "ModelStatistics", lambda m: v2.ModelStatisticsRequest(name=m)),
    ("POST", re.compile(_MODEL + "/infer"), "ModelInfer", lambda m: v2.ModelInferRequest(model_name=m)),
]


def method_of(verb: str, path: str) -> tuple[str, Any] | None:
    """The gRPC method a REST v2 call mirrors and a request naming its model; None when none does."""
    for rule_verb, pattern, method, request in RULES:
        matched = pattern.fullmatch(path)
        if matched and rule_verb == verb:
            return PREFIX + method, request(matched.groupdict().get("model", ""))
    return None


@dataclass
class Admitted:
    """A call the authorizer let in, to record once answered."""

    access: Authorizer
    method: str
    checked: CallAccess

    def record(self, peer: str, code: str) -> None:
        self.access.record(self.method, self.checked, peer, code)


async def admit(access: Authorizer | None, verb: str, path: str, authorization: str | None) -> Admitted | None:
    """Check a REST v2 call as the gRPC method it mirrors: AtelierError when refused; None when there is
    nothing to record (access control off, or health)."""
    path = path.rstrip("/") or "/"
    if access is None or path.startswith("/v2/health/"):
        return None
    found = method_of(verb, path)
    if found is None:
        raise PermissionDenied(f"{verb} {path} is not a route access control knows; refused")
    method, message = found
    return Admitted(access, method, await access.check(method, message, authorization))


def guard(app: FastAPI, authorizer: Callable[[], Authorizer | None]) -> None:
    """Check every `/v2` call but health before its route runs (inference is checked by `rest_infer`,
    with `admit` too)."""

    @app.middleware("http")
    async def check_access(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        try:
            admitted = await admit(authorizer(), request.method, request.url.path, request.headers.get("authorization"))
        except AtelierError as error:
            return error_response(error.message, HTTP_STATUS.get(error.code, 403))
        response = await call_next(request)
        if admitted is not None:
            peer = f"ipv4:{request.client.host}:{request.client.port}" if request.client else ""
            admitted.record(peer, "OK" if response.status_code < 400 else str(response.status_code))
        return response
