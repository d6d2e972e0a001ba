"""One Starlette route per HTTP binding, and the handler they all share.

A route matches a request path against its binding's template (so `{name=projects/*/jobs/*}` binds
whole resource names, slashes included), builds the gRPC request, calls the owning service and
turns the answer (or its status) into JSON.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf import json_format
from google.protobuf.message import Message
from starlette.datastructures import URLPath
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Match, NoMatchFound, Router
from starlette.types import ASGIApp, Receive, Scope, Send

from atelier.errors import AtelierError, DeadlineExceeded, InvalidArgument
from gateway import downloads
from gateway.context import TRACE_HEADERS_KEY
from gateway.descriptors import HttpBinding, Streaming
from gateway.errors import body_of_atelier_error, body_of_rpc_error, error_body, http_status
from gateway.metrics import ROUTE_KEY
from gateway.streaming import stream_response
from gateway.transcode import build_request
from gateway.uploads import framing_of, request_messages
from gateway.upstream import Upstreams, unavailable

TIMEOUT_HEADER = "x-request-timeout"
_TIMEOUT = re.compile(r"(\d+(?:\.\d+)?)(ms|s)?")


@dataclass(frozen=True)
class CallSettings:
    """What every call through the gateway shares."""

    upstreams: Upstreams
    default_timeout: float
    max_timeout: float
    # The largest JSON body turned into one request message (the services' message limit).
    max_body_bytes: int = 8 * 1024 * 1024


async def _body(request: Request, limit: int) -> bytes:
    """The request's body, refused unread when it says it is larger than one message may be, and
    when it turns out to be."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise _too_large(int(declared), limit)
    body = await request.body()
    if len(body) > limit:
        raise _too_large(len(body), limit)
    return body


def _too_large(size: int, limit: int) -> InvalidArgument:
    return InvalidArgument(
        f"the request body is {size} bytes; at most {limit} fit one request (files go through chunks:upload, "
        "which streams)",
        metadata={"field": "body", "limit": str(limit)},
    )


class RuleRoute(BaseRoute):
    """The route of one HTTP binding."""

    def __init__(self, binding: HttpBinding, settings: CallSettings) -> None:
        self.binding = binding
        self.settings = settings
        self.template = binding.template.openapi_path()[0]
        # A download also answers HEAD: the headers of its GET (size, ranges, ETag) without the bytes.
        head = binding.http_method == "GET" and downloads.is_download(binding)
        self.methods = (binding.http_method, "HEAD") if head else (binding.http_method,)

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        if scope["type"] != "http":
            return Match.NONE, {}
        values = self.binding.template.match(scope["path"])
        if values is None:
            return Match.NONE, {}
        matched = Match.FULL if scope["method"] in self.methods else Match.PARTIAL
        return matched, {"path_params": values, ROUTE_KEY: self.template}

    def url_path_for(self, name: str, /, **path_params: Any) -> URLPath:
        raise NoMatchFound(name, path_params)

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["method"] not in self.methods:
            allowed = ", ".join(self.methods)
            refusal = f"{scope['method']} is not allowed on {scope['path']}; allowed: {allowed}"
            body = error_body(grpc.StatusCode.UNIMPLEMENTED, refusal)
            body["error"]["code"] = 405
            response: Response = JSONResponse(body, status_code=405, headers={"Allow": allowed})
        else:
            request = Request(scope, receive)
            response = await call(self.binding, request, scope["path_params"], self.settings)
        await response(scope, receive, send)


class DirectRoutes:
    """ASGI middleware handing a request whose route (the first to match it fully, as the router picks)
    is a `RuleRoute` straight to that route, past FastAPI's exception middleware, exit stack and router:
    three layers, each with its own coroutine and `send` wrapper, that such a route never needs (it
    answers every error itself; an unexpected exception still reaches the server's error middleware,
    outside this one). Anything else (FastAPI's own routes, KServe, 404, 405) goes down the usual stack."""

    def __init__(self, app: ASGIApp, router: Router) -> None:
        self.app = app
        self.router = router

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            for route in self.router.routes:
                matched, child_scope = route.matches(scope)
                if matched is Match.FULL:
                    if isinstance(route, RuleRoute):
                        scope.update(child_scope)
                        scope.setdefault("router", self.router)
                        await route.handle(scope, receive, send)
                        return
                    break
        await self.app(scope, receive, send)


async def call(
    binding: HttpBinding, request: Request, path_values: Mapping[str, str], settings: CallSettings
) -> Response:
    """Transcode the HTTP request, call the service, transcode the answer."""
    if binding.streaming is Streaming.BIDI:
        refusal = (
            f"{binding.rpc_path} is a bidirectional stream, which the REST gateway does not carry; call it over gRPC"
        )
        return JSONResponse(error_body(grpc.StatusCode.UNIMPLEMENTED, refusal), status_code=501)
    try:
        raw = binding.streaming is Streaming.SERVER and downloads.wants_bytes(binding, request)
        # A stream (an upload, a download, a followed log) lasts as long as it has something to carry: the
        # longest deadline unless one is given.
        default = settings.default_timeout if binding.streaming is Streaming.UNARY else settings.max_timeout
        timeout = request_timeout(request.headers.get(TIMEOUT_HEADER), default, settings.max_timeout)
        query = [(k, v) for k, v in request.query_params.multi_items() if not (raw and (k, v) == downloads.ALT_MEDIA)]
        if binding.streaming is Streaming.CLIENT:
            framing_of(request.headers.get("content-type", ""))
            message = binding.request_class()()
        else:
            # A binding without a body (GET, DELETE) reads none: the request's fields are in its path and query.
            body = await _body(request, settings.max_body_bytes) if binding.body else b""
            message = build_request(binding, path_values, query, body)
        address, _ = settings.upstreams.channel(binding.service)
    except AtelierError as error:
        return error_response(error)
    state = request.scope["state"]
    metadata: tuple[tuple[str, str], ...] = (
        ("x-request-id", str(state["request_id"])),
        *state.get(TRACE_HEADERS_KEY, ()),
    )
    credentials = request.headers.get("authorization")
    if credentials:  # the services check it; the gateway holds no opinion of its own
        metadata = (*metadata, ("authorization", credentials))
    response_type = binding.response_class()
    upstreams = settings.upstreams
    try:
        if binding.streaming is Streaming.CLIENT:
            messages = request_messages(
                binding, path_values, query, request.headers.get("content-type", ""), request.stream()
            )
            call_ = upstreams.client_stream(binding.service, binding.rpc_path, response_type, timeout, metadata)
            answer = await stream_upload(call_, messages)
        elif raw:
            return await downloads.download(binding, message, request, upstreams, timeout, metadata)
        elif binding.streaming is Streaming.SERVER:
            stream = upstreams.server_stream(
                binding.service, binding.rpc_path, message, response_type, timeout, metadata
            )
            return await stream_response(
                stream, lambda m: to_json(m, binding.response_body), request.headers.get("accept", ""), {}
            )
        else:
            answer = await upstreams.unary(binding.service, binding.rpc_path, message, response_type, timeout, metadata)
    except AtelierError as error:
        return error_response(error)
    except ClientDisconnect:
        return Response(status_code=499)
    except grpc.aio.AioRpcError as error:
        return rpc_error_response(binding, address, timeout, error)
    return JSONResponse(to_json(answer, binding.response_body))


async def stream_upload(call: grpc.aio.StreamUnaryCall[Message, Message], messages: AsyncIterator[Message]) -> Message:
    """Write each request message to the call as it arrives, then take its answer. A bad frame or a
    client gone cancels the call (and raises `InvalidArgument` or `ClientDisconnect`)."""
    try:
        async for message in messages:
            if call.done():
                break  # the service has answered (an error) before the end of the body
            await call.write(message)
        if not call.done():
            await call.done_writing()
    except (AtelierError, ClientDisconnect, asyncio.CancelledError):
        call.cancel()
        raise
    except (grpc.aio.AioRpcError, asyncio.InvalidStateError):
        pass  # the call ended while writing: its status says why
    answer: Message = await call
    return answer


def to_json(message: Message, response_body: str = "") -> Any:
    """A response in protobuf's canonical JSON mapping (or its `response_body` field alone)."""
    if response_body:
        value = getattr(message, response_body)
        field = message.DESCRIPTOR.fields_by_name[response_body]
        whole = json_format.MessageToDict(message, always_print_fields_with_no_presence=True)
        return whole.get(field.json_name) if not isinstance(value, Message) else json_format.MessageToDict(value)
    return json_format.MessageToDict(message)


def request_timeout(header: str | None, default: float, most: float) -> float:
    """The call's deadline in seconds from `X-Request-Timeout` (`5`, `2.5s`, `300ms`), else the default."""
    if header is None:
        return default
    found = _TIMEOUT.fullmatch(header.strip())
    seconds = float(found.group(1)) / (1000 if found.group(2) == "ms" else 1) if found else 0.0
    if not 0 < seconds <= most:
        raise InvalidArgument(
            f"X-Request-Timeout {header!r} is not a timeout; give seconds above 0 and at most {most:g} "
            "(`5`, `2.5s` or `300ms`)"
        )
    return seconds


def error_response(error: AtelierError) -> JSONResponse:
    return JSONResponse(body_of_atelier_error(error), status_code=http_status(error.code))


def rpc_error_response(binding: HttpBinding, address: str, timeout: float, error: grpc.aio.AioRpcError) -> JSONResponse:
    """A failed call; a service that could not be reached, or did not answer in time, is named."""
    body = body_of_rpc_error(error)
    if not body["error"]["details"]:
        if error.code() == grpc.StatusCode.UNAVAILABLE:
            return error_response(unavailable(binding.service, address, error.details() or "no connection"))
        if error.code() == grpc.StatusCode.DEADLINE_EXCEEDED:
            late = DeadlineExceeded(
                f"the {binding.service} service at {address} did not answer {binding.rpc_path} within {timeout:g}s",
                metadata={"service": binding.service, "timeout_seconds": f"{timeout:g}"},
            )
            return error_response(late)
    return JSONResponse(body, status_code=http_status(error.code()))
