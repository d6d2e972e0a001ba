"""KServe v2 REST (`/v2`, `/v2/...`) passed through to the inference service's own REST v2.

The request streams to the inference service's HTTP address (its address file's `http`, or
`ATELIER_INFERENCE_HTTP`) with its method, path, query, body and headers (authorization,
content-type, `Inference-Header-Content-Length` of the binary-tensor extension, ...; not the
connection's own), plus the gateway span's `traceparent` and the request id; the answer streams back
with its status and headers unchanged. A client that goes away closes the upstream request. When the
inference service has no address or does not answer: 503 in the AIP-193 shape naming it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
from opentelemetry import propagate
from starlette.datastructures import URLPath
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import BaseRoute, Match, NoMatchFound
from starlette.types import Receive, Scope, Send

from atelier.errors import AtelierError, DeadlineExceeded
from gateway.context import REQUEST_ID_HEADER
from gateway.errors import body_of_atelier_error, http_status
from gateway.metrics import ROUTE_KEY
from gateway.upstream import Upstreams, unavailable

SERVICE = "inference"
PREFIX = "/v2"
_HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "host",
        "traceparent",
        "tracestate",
        REQUEST_ID_HEADER,  # the gateway's own, set on both sides
    }
)


class KServeRoute(BaseRoute):
    """Every method on `/v2` and below, proxied to the inference service's REST v2."""

    def __init__(self, upstreams: Upstreams, client: httpx.AsyncClient) -> None:
        self.upstreams = upstreams
        self.client = client

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        path = scope.get("path", "")
        if scope["type"] == "http" and (path == PREFIX or path.startswith(PREFIX + "/")):
            return Match.FULL, {ROUTE_KEY: route_template(path)}
        return Match.NONE, {}

    def url_path_for(self, name: str, /, **path_params: object) -> URLPath:
        raise NoMatchFound(name, path_params)

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = await self.forward(Request(scope, receive))
        await response(scope, receive, send)

    async def forward(self, request: Request) -> Response:
        try:
            address = self.upstreams.http_address(SERVICE)
        except AtelierError as error:
            return _error(error)
        headers = [(k, v) for k, v in request.headers.items() if k.lower() not in _HOP_BY_HOP]
        carrier: dict[str, str] = {}
        propagate.inject(carrier)  # the gateway's span, which continues the caller's trace
        headers += [*carrier.items(), (REQUEST_ID_HEADER, str(request.state.request_id))]
        has_body = "content-length" in request.headers or "transfer-encoding" in request.headers
        upstream = self.client.build_request(
            request.method,
            f"http://{address}{request.url.path}",
            params=request.url.query,
            headers=headers,
            content=_body(request) if has_body else None,
        )
        try:
            answer = await self.client.send(upstream, stream=True)
        except ClientDisconnect:
            return Response(status_code=499)
        except httpx.TimeoutException as error:
            late = DeadlineExceeded(
                f"the {SERVICE} service at {address} did not answer {request.method} {request.url.path} in time: "
                f"{type(error).__name__}",
                metadata={"service": SERVICE, "address": address},
            )
            return _error(late)
        except httpx.TransportError as error:
            return _error(unavailable(SERVICE, address, str(error) or type(error).__name__))
        kept = [(k, v) for k, v in answer.headers.multi_items() if k.lower() not in _HOP_BY_HOP]

        async def body() -> AsyncIterator[bytes]:
            try:
                async for piece in answer.aiter_raw():
                    yield piece
            finally:
                await answer.aclose()

        response = StreamingResponse(body(), status_code=answer.status_code)
        response.raw_headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in kept]
        return response


async def _body(request: Request) -> AsyncIterator[bytes]:
    async for piece in request.stream():
        if piece:
            yield piece


def _error(error: AtelierError) -> JSONResponse:
    return JSONResponse(body_of_atelier_error(error), status_code=http_status(error.code))


def route_template(path: str) -> str:
    """A KServe v2 path with its model name and version as variables (`/v2/models/{model}/infer`)."""
    parts = path.split("/")
    if len(parts) > 3 and parts[2] == "models":
        parts[3] = "{model}"
        if len(parts) > 5 and parts[4] == "versions":
            parts[5] = "{version}"
    return "/".join(parts)
