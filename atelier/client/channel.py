"""Channels to Atelier services: message limits, retries of UNAVAILABLE, tracing, deadlines."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

import grpc

from atelier.client.credentials import AuthMetadata
from atelier.errors import AtelierError, FailedPrecondition, Unavailable, from_rpc_error

T = TypeVar("T")
DEFAULT_TIMEOUT = 30.0
MAX_MESSAGE_BYTES = 8 * 1024 * 1024

_RETRY_CONFIG = json.dumps(
    {
        "methodConfig": [
            {
                "name": [{}],
                "retryPolicy": {
                    "maxAttempts": 4,
                    "initialBackoff": "0.1s",
                    "maxBackoff": "2s",
                    "backoffMultiplier": 2,
                    "retryableStatusCodes": ["UNAVAILABLE"],
                },
            }
        ]
    }
)


def connect(address: str, token: str | None = None, *, own_token: str | None = None) -> grpc.Channel:
    """A channel to `host:port` that retries UNAVAILABLE and carries the trace context and credentials:
    the caller's being served (inside a service), else `own_token` or this process's token; with
    `token`, always that one (a service acting on its own behalf)."""
    channel = grpc.insecure_channel(
        address,
        options=[
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
            ("grpc.service_config", _RETRY_CONFIG),
            ("grpc.enable_retries", 1),
        ],
    )
    if token is not None:
        own = AuthMetadata(lambda: token, forward=False)
    elif own_token:  # a service's own token, for calls made on no caller's behalf
        own = AuthMetadata(lambda: own_token)
    else:
        own = AuthMetadata()
    channel = grpc.intercept_channel(channel, own)
    if not tracing_possible():
        return channel
    from opentelemetry.instrumentation.grpc import client_interceptor
    from opentelemetry.instrumentation.grpc.grpcext import intercept_channel

    # OpenTelemetry's client interceptor has its own channel wrapper (it is not a grpc.*Interceptor).
    return intercept_channel(channel, client_interceptor())  # type: ignore[no-any-return,no-untyped-call]


def tracing_possible() -> bool:
    """Whether calls on a new channel may carry a trace: OpenTelemetry's API is loaded in this process
    (a service, the agent, a traced program using the SDK, the CLI with an exporter) or spans are to be
    exported. Otherwise no span can be current, and the client interceptor (and importing it, about
    30 ms of the CLI's start-up) would only make spans nobody sees."""
    return "opentelemetry.trace" in sys.modules or bool(os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"))


class ServiceClient:
    """Calls with a default deadline, turning failures into `AtelierError`s."""

    service = "Atelier"

    def __init__(self, channel: grpc.Channel, timeout: float = DEFAULT_TIMEOUT, address: str = "") -> None:
        self.channel = channel
        self.timeout = timeout
        self.address = address

    def call(self, method: Callable[..., T], request: Any, timeout: float | None = None) -> T:
        """A unary call (or a client-streaming call given an iterator of requests)."""
        try:
            return method(request, timeout=timeout or self.timeout)
        except grpc.RpcError as error:
            raise self._error(error) from None

    def stream(self, method: Callable[..., Iterable[T]], request: Any, timeout: float | None = None) -> Iterator[T]:
        """A server-streaming call; errors surface while iterating."""
        try:
            yield from method(request, timeout=timeout or self.timeout)
        except grpc.RpcError as error:
            raise self._error(error) from None

    def pages(
        self, method: Callable[..., Any], request: Any, field: str, timeout: float | None = None
    ) -> Iterator[Any]:
        """Every item of a List RPC, following `next_page_token` (AIP-158) to the end."""
        while True:
            page = self.call(method, request, timeout)
            yield from getattr(page, field)
            if not page.next_page_token:
                return
            request.page_token = page.next_page_token

    def _error(self, error: grpc.RpcError) -> AtelierError:
        if error.code() == grpc.StatusCode.UNIMPLEMENTED and "not found" in str(error.details()).lower():  # type: ignore[attr-defined]
            where = f" at {self.address}" if self.address else ""
            return FailedPrecondition(
                f"the server{where} does not answer {self.service} calls ({error.details()}): "  # type: ignore[attr-defined]
                f"is it the {self.service} service? (`atelier status` shows where each one listens)",
                metadata={"detail": str(error.details())},  # type: ignore[attr-defined]
            )
        converted = from_rpc_error(error)
        if isinstance(converted, Unavailable) and not converted.metadata:
            where = f" at {self.address}" if self.address else ""
            return Unavailable(
                f"cannot reach the {self.service} service{where}; is it running? (`atelier status`)",
                metadata={"detail": converted.message},
            )
        return converted

    def close(self) -> None:
        self.channel.close()
