"""Atelier's one error hierarchy, shared by services, clients, the CLI and the SDK.

Domain code raises these; the server interceptor turns them into a gRPC status with a
`google.rpc.Status` carrying an `ErrorInfo` (AIP-193); clients turn the status back into the same
class, so a caller catches `atelier.errors.NotFound` whichever side of the wire raised it.
"""

from __future__ import annotations

from collections.abc import Mapping

import grpc

from atelier.common.v1 import error_reason_pb2

ErrorReason = error_reason_pb2.ErrorReason
ERROR_DOMAIN = "atelier.dev"


class AtelierError(Exception):
    """Base class: a failure with a gRPC status code and a machine-readable reason."""

    code: grpc.StatusCode = grpc.StatusCode.UNKNOWN
    default_reason: int = ErrorReason.ERROR_REASON_INTERNAL

    def __init__(
        self,
        message: str,
        *,
        reason: int | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.reason: int = self.default_reason if reason is None else reason
        self.metadata: dict[str, str] = dict(metadata or {})

    @property
    def reason_name(self) -> str:
        """The reason as its enum name without the `ERROR_REASON_` prefix, e.g. `NOT_FOUND`."""
        return ErrorReason.Name(self.reason).removeprefix("ERROR_REASON_")  # type: ignore[arg-type]

    def __str__(self) -> str:
        return self.message


class InvalidArgument(AtelierError):
    """The request is malformed; the message names the field, the value and what is allowed."""

    code = grpc.StatusCode.INVALID_ARGUMENT
    default_reason = ErrorReason.ERROR_REASON_INVALID_ARGUMENT


class NotFound(AtelierError):
    """The named resource does not exist."""

    code = grpc.StatusCode.NOT_FOUND
    default_reason = ErrorReason.ERROR_REASON_NOT_FOUND


class AlreadyExists(AtelierError):
    """A resource with that name exists already."""

    code = grpc.StatusCode.ALREADY_EXISTS
    default_reason = ErrorReason.ERROR_REASON_ALREADY_EXISTS


class Aborted(AtelierError):
    """A concurrent change won (e.g. the parent version is no longer the newest)."""

    code = grpc.StatusCode.ABORTED
    default_reason = ErrorReason.ERROR_REASON_CONFLICT


class FailedPrecondition(AtelierError):
    """The system is not in the state the operation needs."""

    code = grpc.StatusCode.FAILED_PRECONDITION
    default_reason = ErrorReason.ERROR_REASON_FAILED_PRECONDITION


class ResourceExhausted(AtelierError):
    """A quota or size limit would be exceeded."""

    code = grpc.StatusCode.RESOURCE_EXHAUSTED
    default_reason = ErrorReason.ERROR_REASON_QUOTA_EXCEEDED


class DataLoss(AtelierError):
    """Stored bytes no longer match their digest."""

    code = grpc.StatusCode.DATA_LOSS
    default_reason = ErrorReason.ERROR_REASON_DATA_CORRUPTED


class Unauthenticated(AtelierError):
    """No valid credentials."""

    code = grpc.StatusCode.UNAUTHENTICATED
    default_reason = ErrorReason.ERROR_REASON_UNAUTHENTICATED


class PermissionDenied(AtelierError):
    """The caller may not do this."""

    code = grpc.StatusCode.PERMISSION_DENIED
    default_reason = ErrorReason.ERROR_REASON_PERMISSION_DENIED


class Unavailable(AtelierError):
    """A service or dependency cannot be reached; retrying later may work."""

    code = grpc.StatusCode.UNAVAILABLE
    default_reason = ErrorReason.ERROR_REASON_UNAVAILABLE


class DeadlineExceeded(AtelierError):
    """The deadline passed before the operation finished."""

    code = grpc.StatusCode.DEADLINE_EXCEEDED
    default_reason = ErrorReason.ERROR_REASON_DEADLINE_EXCEEDED


class Cancelled(AtelierError):
    """The caller cancelled the operation."""

    code = grpc.StatusCode.CANCELLED
    default_reason = ErrorReason.ERROR_REASON_INTERNAL


class Internal(AtelierError):
    """A bug or unexpected failure on the server."""

    code = grpc.StatusCode.INTERNAL
    default_reason = ErrorReason.ERROR_REASON_INTERNAL


_BY_CODE: dict[grpc.StatusCode, type[AtelierError]] = {
    cls.code: cls
    for cls in (
        InvalidArgument,
        NotFound,
        AlreadyExists,
        Aborted,
        FailedPrecondition,
        ResourceExhausted,
        DataLoss,
        Unauthenticated,
        PermissionDenied,
        Unavailable,
        DeadlineExceeded,
        Cancelled,
        Internal,
    )
}
# Codes without a class of their own map onto the nearest one.
_BY_CODE[grpc.StatusCode.OUT_OF_RANGE] = InvalidArgument
_BY_CODE[grpc.StatusCode.UNIMPLEMENTED] = Internal
_BY_CODE[grpc.StatusCode.UNKNOWN] = Internal


def error_for_code(code: grpc.StatusCode) -> type[AtelierError]:
    """The AtelierError class that stands for a gRPC status code."""
    return _BY_CODE.get(code, Internal)


def to_status(error: AtelierError) -> grpc.Status:
    """Encode an error as a gRPC status with a `google.rpc.Status` + `ErrorInfo` in the trailers."""
    from google.protobuf import any_pb2
    from google.rpc import error_details_pb2, status_pb2
    from grpc_status import rpc_status

    metadata = {key[:_MAX_KEY]: _bounded(value, _MAX_VALUE) for key, value in error.metadata.items()}
    info = error_details_pb2.ErrorInfo(reason=error.reason_name, domain=ERROR_DOMAIN, metadata=metadata)
    detail = any_pb2.Any()
    detail.Pack(info)
    status = status_pb2.Status(
        code=error.code.value[0], message=_bounded(error.message, _MAX_MESSAGE), details=[detail]
    )
    return rpc_status.to_status(status)


# A status travels in the response's trailers, which gRPC caps at 8 KiB: an error quoting a client's
# oversized value (a 20,000-character name) would otherwise replace itself with a transport error.
_MAX_MESSAGE = 1024
_MAX_KEY = 64
_MAX_VALUE = 256


def _bounded(text: str, limit: int) -> str:
    """`text`, cut to `limit` characters with a note of its length when longer."""
    if len(text) <= limit:
        return text
    note = f"... ({len(text)} characters)"
    return text[: limit - len(note)] + note


def from_rpc_error(error: grpc.RpcError) -> AtelierError:
    """Turn a failed call back into the AtelierError the server raised (or the nearest class)."""
    from google.rpc import error_details_pb2
    from grpc_status import rpc_status

    code: grpc.StatusCode = error.code()  # type: ignore[attr-defined]
    message: str = error.details() or code.name  # type: ignore[attr-defined]
    reason: int | None = None
    metadata: dict[str, str] = {}
    try:
        status = rpc_status.from_call(error)  # type: ignore[arg-type]
    except ValueError:
        status = None
    if status is not None:
        for detail in status.details:
            if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
                info = error_details_pb2.ErrorInfo()
                detail.Unpack(info)
                metadata = dict(info.metadata)
                try:
                    reason = ErrorReason.Value("ERROR_REASON_" + info.reason)
                except ValueError:
                    reason = None
    return error_for_code(code)(message, reason=reason, metadata=metadata)
