"""Server interceptors of the shared runtime.

`MethodInterceptor` is the one mechanism: it wraps the behaviour of every RPC, whatever its
streaming kind, with `around()`. The error interceptor is built on it; metrics and auth
interceptors use the same base.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any

import grpc
from opentelemetry import trace

from atelier.errors import AtelierError, Internal, to_status
from atelier.runtime.auth import Authorizer, CallAccess
from atelier.runtime.metrics import RpcMetrics
from atelier.runtime.spans import OpenSpan, ServerSpans

log = logging.getLogger(__name__)

Behavior = Callable[[Any, grpc.aio.ServicerContext[Any, Any]], Any]

if TYPE_CHECKING:
    Handler = grpc.RpcMethodHandler[Any, Any]
    _ServerInterceptor = grpc.aio.ServerInterceptor[Any, Any]
else:
    Handler = grpc.RpcMethodHandler
    _ServerInterceptor = grpc.aio.ServerInterceptor


class MethodInterceptor(_ServerInterceptor):
    """Wraps every handler; subclasses override `unary()` and `stream()`.

    `kinds` maps each method wrapped so far to its handler kind (`unary_unary`, `unary_stream`,
    `stream_unary`, `stream_stream`). A method's wrapped handler is built once and reused while
    the server hands out the same handler for it, so a call pays only for the wrapper itself."""

    def __init__(self) -> None:
        self.kinds: dict[str, str] = {}
        self._wrapped: dict[str, tuple[Handler, Handler]] = {}

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Handler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Handler:
        handler = await continuation(handler_call_details)
        if handler is None:
            return handler
        method: str = handler_call_details.method  # type: ignore[attr-defined]
        known = self._wrapped.get(method)
        if known is not None and known[0] is handler:
            return known[1]
        wrapped = self._wrap(handler, method)
        self._wrapped[method] = (handler, wrapped)
        return wrapped

    def applies_to(self, method: str) -> bool:
        """Whether to wrap this method (e.g. skip health and reflection)."""
        return True

    async def unary(
        self, method: str, behavior: Behavior, request: Any, context: grpc.aio.ServicerContext[Any, Any]
    ) -> Any:
        """Run a call whose response is a single message."""
        return await behavior(request, context)

    async def stream(
        self, method: str, behavior: Behavior, request: Any, context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[Any]:
        """Run a call whose response is a stream of messages."""
        async for item in behavior(request, context):
            yield item

    def _wrap(self, handler: Handler, method: str) -> Handler:
        if not self.applies_to(method):
            return handler
        kinds = {
            (False, False): ("unary_unary", grpc.unary_unary_rpc_method_handler),
            (False, True): ("unary_stream", grpc.unary_stream_rpc_method_handler),
            (True, False): ("stream_unary", grpc.stream_unary_rpc_method_handler),
            (True, True): ("stream_stream", grpc.stream_stream_rpc_method_handler),
        }
        attr, factory = kinds[(handler.request_streaming, handler.response_streaming)]
        self.kinds[method] = attr
        behavior: Behavior = getattr(handler, attr)
        # A partial of the coroutine (or async generator) method: gRPC sees through it to run the
        # handler as async, and a call costs no extra coroutine frame.
        wrapped = functools.partial(self.stream if handler.response_streaming else self.unary, method, behavior)
        return factory(  # type: ignore[no-any-return]
            wrapped,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )


async def _abort(method: str, error: Exception, context: grpc.aio.ServicerContext[Any, Any]) -> None:
    if not isinstance(error, AtelierError):
        trace_id = format(trace.get_current_span().get_span_context().trace_id, "032x")
        log.exception("unhandled error in %s", method, exc_info=error)
        error = Internal(f"internal error in {method.rsplit('/', 1)[-1]} (trace {trace_id}); see the service log")
    elif error.code in (grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN):
        log.error("%s failed: %s", method, error)
    await context.abort_with_status(to_status(error))  # type: ignore[attr-defined]


class ErrorInterceptor(MethodInterceptor):
    """Turns `AtelierError` into a gRPC status with `google.rpc.Status` details; hides other errors
    behind INTERNAL with the trace id, after logging them."""

    async def unary(
        self, method: str, behavior: Behavior, request: Any, context: grpc.aio.ServicerContext[Any, Any]
    ) -> Any:
        try:
            return await behavior(request, context)
        except (grpc.aio.AbortError, grpc.aio.AioRpcError):
            raise
        except Exception as error:  # noqa: BLE001 - the one place that catches everything
            await _abort(method, error, context)

    async def stream(
        self, method: str, behavior: Behavior, request: Any, context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[Any]:
        try:
            async for item in behavior(request, context):
                yield item
        except (grpc.aio.AbortError, grpc.aio.AioRpcError):
            raise
        except Exception as error:  # noqa: BLE001
            await _abort(method, error, context)


class CallInterceptor(MethodInterceptor):
    """Observes every call once it ends: one structured log line (method, status code, duration,
    with the trace id the log formatter adds; health checks and reflection at DEBUG) and, when given,
    the RPC metrics (started, handled by code, handling time).

    With `tracing`, each call also runs in a SERVER span continuing the caller's W3C trace context
    (what OpenTelemetry's gRPC server instrumentation records); with `errors`, it also does the
    `ErrorInterceptor`'s work. The service host uses both: one wrapper per call instead of a stack
    of three, each with its own coroutine, context manager and servicer-context proxy.

    Methods starting with one of `quiet` (a data plane's per-request calls, such as KServe's
    ModelInfer) log their successful calls at DEBUG: at thousands of calls a second the line is a
    write per call, dearer than the call's own work; failures are still logged at INFO, and the
    metrics count every call."""

    def __init__(
        self,
        metrics: RpcMetrics | None = None,
        *,
        tracing: bool = False,
        errors: bool = False,
        tracer_provider: trace.TracerProvider | None = None,
        authorizer: Authorizer | None = None,
        quiet: tuple[str, ...] = (),
    ) -> None:
        super().__init__()
        self.quiet = quiet
        self.metrics = metrics
        self.errors = errors
        self.authorizer = authorizer
        self.spans = ServerSpans(tracer_provider) if tracing else None

    def _started(self, method: str) -> float:
        if self.metrics is not None:
            self.metrics.start(method, self.kinds.get(method, "unary_unary"))
        return time.perf_counter()

    def _ended(self, method: str, started: float, code: str) -> None:
        seconds = time.perf_counter() - started
        if self.metrics is not None:
            self.metrics.finish(method, self.kinds.get(method, "unary_unary"), code, seconds)
        log_call(method, code, seconds, self.quiet)

    @staticmethod
    def _code(context: grpc.aio.ServicerContext[Any, Any], failed: bool = False) -> str:
        code = context.code()  # type: ignore[attr-defined]
        if isinstance(code, grpc.StatusCode):
            return code.name
        if code in (None, 0):
            return "CANCELLED" if failed else "OK"
        return str(code)

    async def unary(
        self, method: str, behavior: Behavior, request: Any, context: grpc.aio.ServicerContext[Any, Any]
    ) -> Any:
        span = self.spans.open(method, context) if self.spans is not None else None
        started = self._started(method)
        failure: BaseException | None = None
        access: list[CallAccess] = []
        try:
            try:
                if self.authorizer is not None and self.authorizer.applies_to(method):
                    request = await self._authorize(method, request, context, access)
                result = await behavior(request, context)
            except (grpc.aio.AbortError, grpc.aio.AioRpcError):
                raise
            except Exception as error:
                if not self.errors:
                    raise
                failure = None if isinstance(error, AtelierError) else error  # a bug: on the span too
                await _abort(method, error, context)
        except BaseException as error:
            self._close(method, started, self._code(context, failed=True), span, failure or error, access, context)
            raise
        self._close(method, started, self._code(context), span, None, access, context)
        return result

    async def stream(
        self, method: str, behavior: Behavior, request: Any, context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[Any]:
        span = self.spans.open(method, context) if self.spans is not None else None
        started = self._started(method)
        failure: BaseException | None = None
        access: list[CallAccess] = []
        try:
            try:
                if self.authorizer is not None and self.authorizer.applies_to(method):
                    request = await self._authorize(method, request, context, access)
                async for item in behavior(request, context):
                    yield item
            except (grpc.aio.AbortError, grpc.aio.AioRpcError):
                raise
            except Exception as error:
                if not self.errors:
                    raise
                failure = None if isinstance(error, AtelierError) else error  # a bug: on the span too
                await _abort(method, error, context)
        except BaseException as error:
            self._close(method, started, self._code(context, failed=True), span, failure or error, access, context)
            raise
        self._close(method, started, self._code(context), span, None, access, context)

    async def _authorize(
        self, method: str, request: Any, context: grpc.aio.ServicerContext[Any, Any], found: list[CallAccess]
    ) -> Any:
        """Check the call before its handler runs; a client stream is checked on its first message."""
        assert self.authorizer is not None
        header = metadata_value(context, "authorization")
        if self.kinds.get(method, "unary_unary").startswith("stream"):
            # The first message is read and checked before the handler starts, so a refused stream
            # fails at once whatever the handler does with errors of its request stream.
            requests = aiter(request)
            first = await anext(requests, None)
            found.append(await self.authorizer.check(method, first, header))
            return self.authorizer.checked_stream(method, first, requests, header)
        found.append(await self.authorizer.check(method, request, header))
        return request

    def _close(
        self,
        method: str,
        started: float,
        code: str,
        span: OpenSpan | None,
        error: BaseException | None,
        access: list[CallAccess] | None = None,
        context: grpc.aio.ServicerContext[Any, Any] | None = None,
    ) -> None:
        self._ended(method, started, code)
        if span is not None:
            span.close(code, error)
        if access and self.authorizer is not None and context is not None:
            self.authorizer.record(method, access[0], context.peer(), code)


_QUIET = ("/grpc.health.v1.", "/grpc.reflection.")


def log_call(method: str, code: str, seconds: float, quiet: tuple[str, ...] = ()) -> None:
    """The call's log line: INFO, or DEBUG for health checks, reflection and the successful calls of
    methods starting with one of `quiet`."""
    level = logging.DEBUG if method.startswith(_QUIET) or (code == "OK" and method.startswith(quiet)) else logging.INFO
    if log.isEnabledFor(level):
        ms = seconds * 1000
        extra = {"rpc": method, "code": code, "ms": round(ms, 2)}
        # makeRecord + handle: the same record as log.log() without its walk up the stack for
        # the caller's file and line, which no formatter of ours prints.
        log.handle(log.makeRecord(log.name, level, "", 0, "%s %s %.1fms", (method, code, ms), None, extra=extra))


def metadata_value(context: grpc.aio.ServicerContext[Any, Any], key: str) -> str | None:
    """The first value of an invocation metadata key, if present."""
    for item_key, value in context.invocation_metadata() or ():
        if item_key == key:
            return str(value)
    return None
