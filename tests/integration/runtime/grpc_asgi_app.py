"""The ASGI application tests/integration/runtime/test_grpc_asgi.py serves with pyvoy: a small servicer of
`inference.GRPCInferenceService` behind `GrpcAsgi`, whose behaviour each test picks by model name."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2
from grpc_reflection.v1alpha import reflection_pb2
from grpc_reflection.v1alpha._async import ReflectionServicer
from prometheus_client import CollectorRegistry, generate_latest

from atelier.errors import InvalidArgument
from atelier.inference.protocol import grpc_service_pb2 as v2
from atelier.runtime.grpc_asgi import CallContext, GrpcAsgi, Observed, methods_of
from atelier.runtime.metrics import RpcMetrics
from atelier.runtime.spans import ServerSpans

MAX_MESSAGE_BYTES = 1 << 20
SERVICE = v2.DESCRIPTOR.services_by_name["GRPCInferenceService"]


def echo(request: v2.ModelInferRequest, context: CallContext) -> v2.ModelInferResponse:
    """The inputs back as outputs; `id` says what the call's metadata and deadline were."""
    metadata = dict(context.invocation_metadata())
    remaining = context.time_remaining()
    caller, token = metadata.get("x-caller", ""), metadata.get("x-token-bin", b"")
    seen = f"caller={caller!s};bin={token.hex() if isinstance(token, bytes) else token};" + (
        "deadline=none" if remaining is None else f"deadline={remaining:.1f}"
    )
    response = v2.ModelInferResponse(model_name=request.model_name, id=request.id or seen)
    for given in request.inputs:
        response.outputs.add(name=given.name, datatype=given.datatype, shape=given.shape)
    response.raw_output_contents.extend(request.raw_input_contents)
    return response


class Servicer:
    async def ModelInfer(self, request: v2.ModelInferRequest, context: CallContext) -> v2.ModelInferResponse:
        model = request.model_name
        if model == "bad":
            raise InvalidArgument(
                "unexpected shape for input 'x' of model 'bad' (100% wrong, naïvely): expected [1,2], got [3]",
                metadata={"tensor": "x"},
            )
        if model == "crash":
            raise ValueError("a bug")
        if model == "abort":
            await context.abort(grpc.StatusCode.UNIMPLEMENTED, "not offered here")
        if model == "wait":  # answers after a moment: the call's disconnect watcher waits meanwhile
            await asyncio.sleep(0.02)
        if model == "slow":
            marker = Path(os.environ["GRPC_ASGI_MARKERS"]) / request.id
            marker.write_text("started")
            try:
                await asyncio.sleep(60)
            except asyncio.CancelledError:
                marker.write_text("cancelled")
                raise
        return echo(request, context)

    async def ModelStreamInfer(
        self, requests: AsyncIterator[v2.ModelInferRequest], context: CallContext
    ) -> AsyncIterator[v2.ModelStreamInferResponse]:
        async for request in requests:
            if request.model_name == "flood":  # answers until the caller leaves
                for _ in range(1000):
                    yield v2.ModelStreamInferResponse(infer_response=echo(request, context))
                    await asyncio.sleep(0.01)
                continue
            if request.model_name == "bad":
                yield v2.ModelStreamInferResponse(error_message="bad request")
                continue
            yield v2.ModelStreamInferResponse(infer_response=echo(request, context))


registry = CollectorRegistry()
health_servicer = health.aio.HealthServicer()  # type: ignore[attr-defined]
grpc_app = GrpcAsgi(
    {
        **methods_of(Servicer(), SERVICE),
        **methods_of(health_servicer, health_pb2.DESCRIPTOR.services_by_name["Health"]),
        **methods_of(
            ReflectionServicer([SERVICE.full_name, health.SERVICE_NAME]),
            reflection_pb2.DESCRIPTOR.services_by_name["ServerReflection"],
        ),
    },
    max_message_bytes=MAX_MESSAGE_BYTES,
    observed=Observed(metrics=RpcMetrics(registry), spans=ServerSpans()),
)


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    if scope["path"] == "/metrics":  # the RPC metrics, for the test to read
        await receive()
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": generate_latest(registry)})
        return
    await grpc_app(scope, receive, send)
