"""REST v2 inference (`POST /v2/models/{m}[/versions/{v}]/infer`) as a plain ASGI handler in front of
the FastAPI app, which serves every other route.

An inference request is the one call a client makes thousands of times a second. Through FastAPI it
went through Starlette's routing, exception and HTTP middleware (each `@app.middleware` runs the
route in a task group of its own, with memory streams between them) and FastAPI's own telemetry
(a span made for nobody when no exporter is configured), which cost more CPU than the rest of the
request's Python. Here it costs what the work needs: read the body, check access as the gRPC
ModelInfer is checked, decode, infer, encode, two ASGI messages. Same routes, same bodies, same
Triton JSON errors and status codes as before.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import propagate

from atelier.errors import AtelierError
from atelier.runtime.auth import Authorizer
from services.inference import rest_codec
from services.inference.protocol import InferenceProtocol
from services.inference.rest import HTTP_STATUS, decoded_body, error_response, header_length
from services.inference.rest_access import admit

log = logging.getLogger(__name__)
Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]

INFER = re.compile(r"/v2/models/(?P<model>[^/]+)(?:/versions/(?P<version>[^/]+))?/infer/?")
_HEADER_LENGTH = rest_codec.HEADER_LENGTH.lower()
_JSON = [(b"content-type", b"application/json")]
_BINARY = [(b"content-type", b"application/octet-stream")]


class InferRoute:
    """Answers inference requests itself and hands everything else to `app`."""

    def __init__(self, protocol: InferenceProtocol, app: App, authorizer: Callable[[], Authorizer | None]) -> None:
        self.protocol = protocol
        self.app = app
        self.authorizer = authorizer

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        matched = INFER.fullmatch(scope["path"]) if scope["type"] == "http" and scope["method"] == "POST" else None
        if matched is None:
            await self.app(scope, receive, send)
            return
        headers = {key.decode("latin-1"): value.decode("latin-1") for key, value in scope["headers"]}
        body = await _read(receive)
        if body is None:
            return  # the client has gone
        status, content, extra = await self._answer(scope, headers, body, matched["model"], matched["version"] or "")
        response = [*extra, (b"content-length", str(len(content)).encode())]
        await send({"type": "http.response.start", "status": status, "headers": response})
        await send({"type": "http.response.body", "body": content})

    async def _answer(
        self, scope: Scope, headers: dict[str, str], body: bytes, model: str, version: str
    ) -> tuple[int, bytes, list[tuple[bytes, bytes]]]:
        try:
            admitted = await admit(self.authorizer(), "POST", scope["path"], headers.get("authorization"))
        except AtelierError as error:
            return _error(error.message, HTTP_STATUS.get(error.code, 403))
        try:
            answer = await self._infer(headers, body, model, version)
        except AtelierError as error:
            answer = _error(error.message, HTTP_STATUS.get(error.code, 400))
        except Exception:  # noqa: BLE001 - a bug: logged, answered as FastAPI would (500), never leaked
            log.exception("REST inference failed for model %s", model)
            answer = _error("internal error in ModelInfer; see the service log", 500)
        if admitted is not None:
            client = scope.get("client")
            peer = f"ipv4:{client[0]}:{client[1]}" if client else ""
            admitted.record(peer, "OK" if answer[0] < 400 else str(answer[0]))
        return answer

    async def _infer(
        self, headers: dict[str, str], body: bytes, model: str, version: str
    ) -> tuple[int, bytes, list[tuple[bytes, bytes]]]:
        body = decoded_body(body, headers.get("content-encoding", "identity"))
        parsed, choice = rest_codec.infer_request(model, version, body, header_length(headers.get(_HEADER_LENGTH)))
        # The caller's W3C traceparent, if any, is the parent of the request's span.
        token = otel_context.attach(propagate.extract(headers)) if "traceparent" in headers else None
        try:
            result = await self.protocol.infer(parsed)
        finally:
            if token is not None:
                otel_context.detach(token)
        content, length = rest_codec.infer_response(parsed.id, result, choice)
        if length is None:
            return 200, content, _JSON
        return 200, content, [*_BINARY, (rest_codec.HEADER_LENGTH.encode(), str(length).encode())]


async def _read(receive: Receive) -> bytes | None:
    """The whole request body, or None when the client disconnects first."""
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def _error(message: str, status: int) -> tuple[int, bytes, list[tuple[bytes, bytes]]]:
    """Triton's error body, written by `rest.error_response` as every other route's."""
    return status, bytes(error_response(message, status).body), _JSON
