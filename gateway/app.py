"""The gateway's ASGI app: one route per HTTP binding, `/healthz`, `/openapi.json` and `/docs`."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import grpc
import httpx
from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from grpc_health.v1 import health_pb2, health_pb2_grpc
from prometheus_client import CollectorRegistry
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse

from atelier.errors import AtelierError, Internal, NotFound
from gateway.context import RequestContext
from gateway.descriptors import bindings
from gateway.errors import body_of_atelier_error, error_body, http_status
from gateway.frontdoor.routing import stack_services
from gateway.kserve import KServeRoute
from gateway.metrics import HttpMetrics
from gateway.openapi import openapi_document
from gateway.routes import CallSettings, DirectRoutes, RuleRoute
from gateway.settings import GatewaySettings
from gateway.upstream import Upstreams

log = logging.getLogger(__name__)


def create_app(
    settings: GatewaySettings, upstreams: Upstreams | None = None, registry: CollectorRegistry | None = None
) -> FastAPI:
    """The gateway for every annotated RPC of Atelier's protos, counting its requests in `registry`
    (`gateway.metrics`) when given."""
    upstreams = upstreams or Upstreams(settings.home)
    found = bindings()
    http_client = httpx.AsyncClient(timeout=httpx.Timeout(settings.default_timeout_seconds, connect=5.0))
    document = openapi_document(found)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        await upstreams.close()
        await http_client.aclose()

    app = FastAPI(
        title="Atelier gateway",
        openapi_url=None,
        docs_url=None,
        redoc_url=None,
        lifespan=lifespan,
        # `RequestContext` makes the request's span; FastAPI's own spans, metrics and logs per request
        # would double it and cost about a quarter of a request's CPU time.
        telemetry={"tracing": False, "metrics": False, "logs": False, "operation_spans": False},
    )
    app.state.bindings = found

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> JSONResponse:
        services = await service_health(upstreams, stack_services(), settings.health_timeout_seconds)
        unreachable = [name for name, state in services.items() if state == "UNREACHABLE"]
        return JSONResponse({"status": "SERVING", "services": services, "unreachable": unreachable})

    @app.get("/openapi.json", include_in_schema=False)
    async def openapi() -> JSONResponse:
        return JSONResponse(document)

    @app.get("/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        return get_swagger_ui_html(openapi_url="/openapi.json", title="Atelier API")

    call_settings = CallSettings(
        upstreams, settings.default_timeout_seconds, settings.max_timeout_seconds, settings.max_body_bytes
    )
    app.router.routes.extend(RuleRoute(binding, call_settings) for binding in found)
    app.router.routes.append(KServeRoute(upstreams, http_client))
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected)
    # Added first, so it runs inside `RequestContext` (which spans and counts every request).
    app.add_middleware(DirectRoutes, router=app.router)
    app.add_middleware(RequestContext, metrics=HttpMetrics(registry) if registry is not None else None)
    return app


async def service_health(upstreams: Upstreams, services: list[str], timeout: float) -> dict[str, str]:
    """`grpc.health.v1` state of each service behind the gateway: SERVING, NOT_SERVING or UNREACHABLE."""
    names = sorted(services)
    states = await asyncio.gather(*(_check(upstreams, name, timeout) for name in names))
    return dict(zip(names, states, strict=True))


async def _check(upstreams: Upstreams, service: str, timeout: float) -> str:
    try:
        _, channel = upstreams.channel(service)
        answer = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=timeout)
    except (AtelierError, grpc.aio.AioRpcError):
        return "UNREACHABLE"
    return "SERVING" if answer.status == health_pb2.HealthCheckResponse.SERVING else "NOT_SERVING"


async def _http_error(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, HTTPException)
    if error.status_code == 404:
        failure: AtelierError = NotFound(
            f"no route for {request.method} {request.url.path}; the API is described at /openapi.json"
        )
    elif error.status_code == 405:  # as the API's own routes answer a method they do not take
        body = error_body(grpc.StatusCode.UNIMPLEMENTED, f"{request.method} is not allowed on {request.url.path}")
        body["error"]["code"] = 405
        return JSONResponse(body, status_code=405, headers=error.headers)
    else:
        failure = Internal(str(error.detail))
    status = error.status_code if error.status_code != 404 else http_status(failure.code)
    return JSONResponse(body_of_atelier_error(failure), status_code=status)


async def _unexpected(request: Request, error: Exception) -> JSONResponse:
    log.exception("unexpected failure of %s %s", request.method, request.url.path)
    body: dict[str, Any] = body_of_atelier_error(Internal(f"the gateway failed: {type(error).__name__}"))
    return JSONResponse(body, status_code=500)
