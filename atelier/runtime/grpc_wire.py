"""gRPC's wire format over ASGI, as PROTOCOL-HTTP2.md in grpc/grpc defines it: length-prefixed messages
read from a request body as it arrives, `grpc-timeout`, and the status a call ends with, in trailers
(`atelier.runtime.grpc_asgi` serves calls with these)."""

from __future__ import annotations

import base64
import logging
import urllib.parse
from collections.abc import Awaitable, Callable
from typing import Any

import grpc

from atelier.errors import AtelierError, Internal, to_status

log = logging.getLogger(__name__)

Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

DEFAULT_MAX_MESSAGE_BYTES = 64 * 1024 * 1024
TIMEOUT_UNITS = {"H": 3600.0, "M": 60.0, "S": 1.0, "m": 1e-3, "u": 1e-6, "n": 1e-9}
# Request headers that are the protocol's, not the caller's metadata.
PROTOCOL_HEADERS = frozenset(
    {"content-type", "te", "grpc-timeout", "grpc-encoding", "grpc-accept-encoding", "user-agent", "host"}
)
# grpc-message is percent-encoded: printable ASCII stays as it is, except '%'.
_MESSAGE_SAFE = "".join(chr(c) for c in range(0x20, 0x7F) if c != 0x25)
# The response's headers, and the trailers of a call that ended well.
START = {"type": "http.response.start", "status": 200, "trailers": True,
         "headers": [(b"content-type", b"application/grpc"), (b"grpc-accept-encoding", b"identity")]}  # fmt: skip
OK = {"type": "http.response.trailers", "headers": [(b"grpc-status", b"0")], "more_trailers": False}


class Abort(Exception):
    """A status a handler ends its call with (`CallContext.abort`)."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def parse_timeout(value: str) -> float:
    """Seconds of a `grpc-timeout` header (at most 8 digits and a unit: H, M, S, m, u or n)."""
    digits, unit = value[:-1], value[-1:]
    if not (digits.isdigit() and len(digits) <= 8 and unit in TIMEOUT_UNITS):
        raise Abort(grpc.StatusCode.INVALID_ARGUMENT, f"malformed grpc-timeout {value!r}: up to 8 digits and a unit")
    return int(digits) * TIMEOUT_UNITS[unit]


def status_trailers(code: grpc.StatusCode, message: str, details: bytes | None = None) -> dict[str, Any]:
    """The trailers message of a call that ends with `code`."""
    headers = [(b"grpc-status", str(code.value[0]).encode())]
    if message:
        headers.append((b"grpc-message", urllib.parse.quote(message, safe=_MESSAGE_SAFE).encode()))
    if details:
        headers.append((b"grpc-status-details-bin", base64.b64encode(details).rstrip(b"=")))
    return {"type": "http.response.trailers", "headers": headers, "more_trailers": False}


def error_trailers(method: str, error: BaseException) -> tuple[grpc.StatusCode, dict[str, Any]]:
    """How a failed call ends: Atelier's errors with their details, other failures as INTERNAL."""
    if isinstance(error, Abort):
        return error.code, status_trailers(error.code, error.message)
    if isinstance(error, TimeoutError):
        return grpc.StatusCode.DEADLINE_EXCEEDED, status_trailers(
            grpc.StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded"
        )
    if not isinstance(error, AtelierError):
        log.exception("unhandled error in %s", method, exc_info=error)
        error = Internal(f"internal error in {method.rsplit('/', 1)[-1]}; see the service log")
    status = to_status(error)
    details = dict(status.trailing_metadata).get("grpc-status-details-bin")
    return status.code, status_trailers(status.code, status.details, details if isinstance(details, bytes) else None)


class Disconnected(Exception):
    """The client went away (ASGI `http.disconnect`)."""


class Framing:
    """Length-prefixed messages out of a request body, as it arrives. A large message comes in many body
    chunks: they are kept in a list and joined once it is whole (not copied again with each chunk)."""

    def __init__(self, receive: Receive, limit: int) -> None:
        self._receive = receive
        self._limit = limit
        self._buffer = b""
        self._pending: list[bytes] = []
        self._pending_size = 0
        self.ended = False
        self.disconnected = False

    def _gathered(self, needed: int) -> bytes | None:
        """The buffered bytes, joined, when there are at least `needed` of them; else None."""
        if len(self._buffer) + self._pending_size < needed:
            return None
        if self._pending:
            self._buffer = b"".join([self._buffer, *self._pending])
            self._pending, self._pending_size = [], 0
        return self._buffer

    async def read(self) -> bytes | None:
        """The next message, or None at the end of the request."""
        needed = 0  # the message's length with its prefix, once the prefix is read
        while True:
            buffer = self._gathered(needed or 5)
            if buffer is not None:
                if not needed:
                    if buffer[0]:
                        refused = "compressed messages are not accepted; send identity"
                        raise Abort(grpc.StatusCode.UNIMPLEMENTED, refused)
                    length = int.from_bytes(buffer[1:5], "big")
                    if length > self._limit:
                        raise Abort(
                            grpc.StatusCode.RESOURCE_EXHAUSTED,
                            f"Received message larger than max ({length} vs. {self._limit})",
                        )
                    needed = 5 + length
                    continue
                self._buffer = buffer[needed:]
                return buffer[5:needed]
            if self.ended:
                if self._buffer or self._pending:
                    raise Abort(grpc.StatusCode.INTERNAL, "the request ended inside a message")
                return None
            event = await self._receive()
            if event["type"] == "http.disconnect":
                self.disconnected = True
                raise Disconnected
            body = event.get("body", b"")
            if body:
                self._pending.append(body)
                self._pending_size += len(body)
            self.ended = not event.get("more_body", False)


def framed(body: bytes) -> bytes:
    return b"\x00" + len(body).to_bytes(4, "big") + body


async def send_status(send: Send, trailers: dict[str, Any]) -> None:
    """A call answered by its status alone: headers, an empty body, the status trailers."""
    await send(START)
    await send({"type": "http.response.body", "body": b"", "more_body": False})
    await send(trailers)
