"""REST v2 handlers (KServe v2 / Triton HTTP) over the same `InferenceProtocol` as gRPC.

Metadata, configuration, statistics and the repository index are the gRPC messages `convert.py`
builds, written as JSON with the protocol's field names (int64 as numbers, enums by name, as
Triton writes them). Errors are Triton's: a JSON body `{"error": "..."}` with the HTTP status
Triton gives the error's code (400 for invalid arguments, 404 not found, 503 unavailable, ...).
"""

from __future__ import annotations

import zlib
from typing import Any

import grpc
from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message
from starlette.exceptions import HTTPException

from atelier.errors import AtelierError, InvalidArgument
from services.inference import convert, rest_codec
from services.inference.protocol import EXTENSIONS, SERVER_VERSION, InferenceProtocol

HTTP_STATUS: dict[grpc.StatusCode, int] = {
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.FAILED_PRECONDITION: 400,
    grpc.StatusCode.ALREADY_EXISTS: 400,
    grpc.StatusCode.CANCELLED: 400,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.UNAUTHENTICATED: 401,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
    grpc.StatusCode.UNIMPLEMENTED: 501,
    grpc.StatusCode.INTERNAL: 500,
}
"""HTTP status by error code; any other code is 400, as Triton answers unknown errors."""

_INT64 = {
    FieldDescriptor.TYPE_INT64,
    FieldDescriptor.TYPE_UINT64,
    FieldDescriptor.TYPE_SINT64,
    FieldDescriptor.TYPE_FIXED64,
    FieldDescriptor.TYPE_SFIXED64,
}


def _scalar(field: Any, value: Any) -> Any:
    if field.type == FieldDescriptor.TYPE_MESSAGE:
        return proto_json(value)
    if field.type == FieldDescriptor.TYPE_ENUM:
        named = field.enum_type.values_by_number.get(value)
        return value if named is None else named.name
    if field.type in _INT64:
        return int(value)
    return value


def proto_json(message: Message) -> dict[str, Any]:
    """A message as Triton's JSON: proto field names, numbers as numbers, scalars with their zero
    values included, unset sub-messages and oneof members left out."""
    out: dict[str, Any] = {}
    field: Any
    for field in message.DESCRIPTOR.fields:
        value = getattr(message, field.name)
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            entry = field.message_type.fields_by_name["value"]
            out[field.name] = {key: _scalar(entry, v) for key, v in value.items()}
        elif field.is_repeated:
            out[field.name] = [_scalar(field, v) for v in value]
        elif field.type == FieldDescriptor.TYPE_MESSAGE or field.containing_oneof is not None:
            if message.HasField(field.name):
                out[field.name] = _scalar(field, value)
        else:
            out[field.name] = _scalar(field, value)
    return out


def error_response(message: str, status: int) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def _status(ok: bool) -> Response:
    """Health and readiness: 200 when true, 400 otherwise (an empty body either way), as Triton."""
    return Response(status_code=200 if ok else 400)


def decoded_body(body: bytes, encoding: str) -> bytes:
    """A request body as sent with `Content-Encoding` (identity, gzip or deflate), decompressed."""
    encoding = encoding.lower()
    try:
        if encoding == "gzip":
            return zlib.decompress(body, 16 + zlib.MAX_WBITS)
        if encoding == "deflate":
            return zlib.decompress(body)
    except zlib.error as error:
        raise InvalidArgument(f"the request body is not valid {encoding} data: {error}") from None
    if encoding != "identity":
        raise InvalidArgument(f"unsupported Content-Encoding '{encoding}'; allowed: identity, gzip, deflate")
    return body


def header_length(given: str | None) -> int | None:
    """`Inference-Header-Content-Length`, when given."""
    if given is None:
        return None
    try:
        return int(given)
    except ValueError:
        raise InvalidArgument(f"{rest_codec.HEADER_LENGTH} must be an integer, got '{given}'") from None


def rest_app(protocol: InferenceProtocol) -> FastAPI:
    """The `/v2/...` routes of one inference server."""
    app = FastAPI(title="Atelier inference (KServe v2)", docs_url=None, redoc_url=None, openapi_url=None)

    @app.exception_handler(AtelierError)
    async def atelier_error(request: Request, error: AtelierError) -> JSONResponse:
        return error_response(error.message, HTTP_STATUS.get(error.code, 400))

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, error: HTTPException) -> JSONResponse:
        return error_response(str(error.detail), error.status_code)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, error: RequestValidationError) -> JSONResponse:
        return error_response(str(error), 400)

    @app.get("/v2/health/live")
    async def live() -> Response:
        return _status(protocol.live)

    @app.get("/v2/health/ready")
    async def ready() -> Response:
        return _status(protocol.ready())

    @app.get("/v2")
    async def server_metadata() -> dict[str, Any]:
        return {"name": protocol.name, "version": SERVER_VERSION, "extensions": list(EXTENSIONS)}

    @app.get("/v2/models/stats")
    async def all_statistics() -> dict[str, Any]:
        return proto_json(convert.model_statistics(protocol.repository.statistics()))

    @app.post("/v2/repository/index")
    async def repository_index(request: Request) -> list[dict[str, Any]]:
        body = await request.body()
        ready_only = bool(body) and rest_codec.json_flag(body, "ready")
        index = convert.repository_index(protocol.index(), ready_only)
        return [proto_json(m) for m in index.models]

    @app.post("/v2/repository/models/{model}/load")
    async def load(model: str) -> Response:
        await protocol.control.load(model)
        return Response(status_code=200)

    @app.post("/v2/repository/models/{model}/unload")
    async def unload(model: str) -> Response:
        await protocol.control.unload(model)
        return Response(status_code=200)

    for prefix in ("/v2/models/{model}", "/v2/models/{model}/versions/{version}"):
        _model_routes(app, protocol, prefix)
    return app


def _model_routes(app: FastAPI, protocol: InferenceProtocol, prefix: str) -> None:
    @app.get(prefix)
    async def metadata(model: str, version: str = "") -> dict[str, Any]:
        return proto_json(convert.model_metadata(protocol.model(model, version)))

    @app.get(prefix + "/ready")
    async def model_ready(model: str, version: str = "") -> Response:
        return _status(protocol.model_ready(model, version))

    @app.get(prefix + "/config")
    async def config(model: str, version: str = "") -> dict[str, Any]:
        return proto_json(convert.model_config(protocol.model(model, version)).config)

    @app.get(prefix + "/stats")
    async def statistics(model: str, version: str = "") -> dict[str, Any]:
        return proto_json(convert.model_statistics(protocol.repository.statistics(model, version)))

    # POST .../infer is answered before FastAPI by `rest_infer.InferRoute`.
