"""Calls from the gateway to the services: one generic `grpc.aio` channel per service.

The gateway holds no generated stubs: a call names its method path and carries the request's bytes,
so any RPC of any service goes through the same two functions. Every call has a deadline and carries
the W3C trace context of the gateway's span.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import grpc
from google.protobuf.message import Message
from opentelemetry import propagate

from atelier.client.channel import MAX_MESSAGE_BYTES
from atelier.errors import Unavailable
from atelier.stack.addresses import address_file, read_address_file, service_address
from atelier.stack.services import env_var

_RETRY_CONFIG = (
    '{"methodConfig": [{"name": [{}], "retryPolicy": {"maxAttempts": 3, "initialBackoff": "0.05s",'
    ' "maxBackoff": "0.5s", "backoffMultiplier": 2, "retryableStatusCodes": ["UNAVAILABLE"]}}]}'
)


class Upstreams:
    """The services behind the gateway, each reached by a channel opened on first use."""

    def __init__(
        self, home: Path, addresses: Mapping[str, str] | None = None, http_addresses: Mapping[str, str] | None = None
    ) -> None:
        self._home = home
        self._configured = dict(addresses or {})
        self._configured_http = dict(http_addresses or {})
        self._channels: dict[str, tuple[str, grpc.aio.Channel]] = {}
        # Each method's multicallable, made once: making one per call cost about a tenth of a REST call.
        self._methods: dict[tuple[str, str, str, bool], Any] = {}

    def address(self, service: str) -> str:
        """Where `service` listens: a configured address, else `ATELIER_<SVC>_ADDRESS` or its address file."""
        return self._configured.get(service) or service_address(service, self._home, via_gateway=False)

    def http_address(self, service: str) -> str:
        """Where `service` serves its own HTTP API (the inference service's REST v2): a configured address,
        else `ATELIER_<SVC>_HTTP`, else the `http` field of its address file; `Unavailable` naming it when
        none gives one."""
        configured = self._configured_http.get(service) or os.environ.get(env_var(service, "http"), "").strip()
        if configured:
            return configured
        published = read_address_file(address_file(self._home, service))
        if published is None or not published.http:
            raise Unavailable(
                f"the {service} service publishes no HTTP address: run `atelier up` or set {env_var(service, 'http')}",
                metadata={"service": service},
            )
        return published.http

    def channel(self, service: str) -> tuple[str, grpc.aio.Channel]:
        """The address and channel of a service; `Unavailable` naming it when it has no address."""
        known = self._channels.get(service)
        if known is not None:
            return known
        address = self.address(service)
        channel = grpc.aio.insecure_channel(
            address,
            options=[
                ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
                ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
                ("grpc.service_config", _RETRY_CONFIG),
                ("grpc.enable_retries", 1),
                ("grpc.enable_http_proxy", 0),
            ],
        )
        self._channels[service] = (address, channel)
        return address, channel

    def method(self, kind: str, service: str, path: str, response_type: type[Message] | None = None) -> Any:
        """The `kind` multicallable (`unary_unary`, `unary_stream`, `stream_unary`, `stream_stream`) of
        the method at `path` of `service`: messages of `response_type` (the request's own type is
        serialised), or raw bytes both ways without one (the front door)."""
        key = (kind, service, path, response_type is None)
        found = self._methods.get(key)
        if found is None:
            _, channel = self.channel(service)
            make: Callable[..., Any] = getattr(channel, kind)
            found = (
                make(path)
                if response_type is None
                else make(path, request_serializer=_serialize, response_deserializer=response_type.FromString)
            )
            self._methods[key] = found
        return found

    async def unary(
        self,
        service: str,
        path: str,
        request: Message,
        response_type: type[Message],
        timeout: float,
        metadata: tuple[tuple[str, str], ...],
    ) -> Message:
        """One unary call (raises `grpc.aio.AioRpcError` as the service answered)."""
        call = self.method("unary_unary", service, path, response_type)
        response: Message = await call(request, timeout=timeout, metadata=_traced(metadata))
        return response

    def server_stream(
        self,
        service: str,
        path: str,
        request: Message,
        response_type: type[Message],
        timeout: float,
        metadata: tuple[tuple[str, str], ...],
    ) -> grpc.aio.UnaryStreamCall[Message, Message]:
        """A server-streaming call: iterate it for its messages (errors surface while iterating); cancel
        it when the HTTP client goes away."""
        method = self.method("unary_stream", service, path, response_type)
        call: grpc.aio.UnaryStreamCall[Message, Message] = method(request, timeout=timeout, metadata=_traced(metadata))
        return call

    def client_stream(
        self,
        service: str,
        path: str,
        response_type: type[Message],
        timeout: float,
        metadata: tuple[tuple[str, str], ...],
    ) -> grpc.aio.StreamUnaryCall[Message, Message]:
        """A client-streaming call to `write` requests to (each write waits for flow control), then
        `done_writing` and await for the answer; cancel it when the HTTP client goes away."""
        method = self.method("stream_unary", service, path, response_type)
        call: grpc.aio.StreamUnaryCall[Message, Message] = method(timeout=timeout, metadata=_traced(metadata))
        return call

    async def close(self) -> None:
        for _, channel in self._channels.values():
            await channel.close(None)
        self._channels.clear()
        self._methods.clear()


def unavailable(service: str, address: str, detail: str) -> Unavailable:
    """The error for a service the gateway cannot reach."""
    return Unavailable(
        f"the {service} service at {address} is unavailable: {detail}",
        metadata={"service": service, "address": address},
    )


def _traced(metadata: tuple[tuple[str, str], ...]) -> tuple[tuple[str, str], ...]:
    """The metadata plus the current span's W3C trace context (the gateway's server span), so the
    service's span continues the caller's trace, unless it carries a `traceparent` already (a REST
    call passes the one its request context made). (Injected here rather than by OpenTelemetry's aio
    client interceptors, which cost more per call than the rest of the call's Python code.)"""
    if any(key == "traceparent" for key, _ in metadata):
        return metadata
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return (*metadata, *carrier.items())


def _serialize(message: Message) -> bytes:
    return message.SerializeToString()
