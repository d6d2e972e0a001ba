"""gRPC status -> HTTP status, and the AIP-193 JSON error body.

The table is conventions.md's (the comments of google/rpc/code.proto; grpc-gateway uses the same).
The body keeps the `google.rpc.Status` details the service attached (Atelier's `ErrorInfo`:
reason, domain, metadata), in their canonical JSON form.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import grpc
from google.protobuf import any_pb2, json_format
from google.rpc import error_details_pb2, status_pb2

from atelier.errors import ERROR_DOMAIN, AtelierError

_ = error_details_pb2  # imported so that ErrorInfo & co. are in the pool `json_format` resolves `Any`s from

HTTP_STATUS: dict[grpc.StatusCode, int] = {
    grpc.StatusCode.OK: 200,
    grpc.StatusCode.CANCELLED: 499,
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.FAILED_PRECONDITION: 400,
    grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.UNAUTHENTICATED: 401,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.ABORTED: 409,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.UNKNOWN: 500,
    grpc.StatusCode.INTERNAL: 500,
    grpc.StatusCode.DATA_LOSS: 500,
    grpc.StatusCode.UNIMPLEMENTED: 501,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
}
STATUS_DETAILS_KEY = "grpc-status-details-bin"


def http_status(code: grpc.StatusCode) -> int:
    """The HTTP status for a gRPC status code."""
    return HTTP_STATUS.get(code, 500)


def error_body(code: grpc.StatusCode, message: str, details: Sequence[any_pb2.Any] = ()) -> dict[str, Any]:
    """`{"error": {"code": <http>, "message", "status": "NOT_FOUND", "details": [...]}}`."""
    return {
        "error": {
            "code": http_status(code),
            "message": message,
            "status": code.name,
            "details": [_detail(d) for d in details],
        }
    }


def body_of_atelier_error(error: AtelierError) -> dict[str, Any]:
    """The body for an error the gateway raises itself (bad parameter, unknown route, service down)."""
    info = error_details_pb2.ErrorInfo(reason=error.reason_name, domain=ERROR_DOMAIN, metadata=error.metadata)
    packed = any_pb2.Any()
    packed.Pack(info)
    return error_body(error.code, error.message, [packed])


def body_of_rpc_error(error: grpc.aio.AioRpcError) -> dict[str, Any]:
    """The body for a failed upstream call, with the details of its `google.rpc.Status` trailer."""
    details: list[any_pb2.Any] = []
    trailers: Any = error.trailing_metadata() or ()
    for key, value in trailers:
        if key == STATUS_DETAILS_KEY and isinstance(value, bytes):
            details = list(status_pb2.Status.FromString(value).details)
    return error_body(error.code(), error.details() or error.code().name, details)


def _detail(detail: any_pb2.Any) -> dict[str, Any]:
    try:
        return json_format.MessageToDict(detail)
    except (json_format.SerializeToJsonError, TypeError, KeyError):
        return {"@type": detail.type_url}
