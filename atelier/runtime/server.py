"""Starting and stopping a `grpc.aio` server the same way in every service.

Health checking (`grpc.health.v1`), reflection, tracing and the error interceptor are always on;
SIGTERM and SIGINT stop the server gracefully: health turns NOT_SERVING, new calls are refused and
calls in flight get `shutdown_grace_seconds` to finish.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import logging
import os
import signal
import sys
import threading
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, ParamSpec, TypeVar

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from opentelemetry.trace import TracerProvider
from prometheus_client import CollectorRegistry

from atelier.errors import AtelierError, Unavailable
from atelier.runtime.auth import Authorizer, IdentityCache, Lookup, validate_mode
from atelier.runtime.iam_link import IamLink
from atelier.runtime.interceptors import CallInterceptor
from atelier.runtime.logging import configure_logging
from atelier.runtime.memory import freeze_startup_objects
from atelier.runtime.metrics import MetricsEndpoint, RpcMetrics, serve_metrics, service_registry
from atelier.runtime.settings import ServiceSettings, load_settings
from atelier.runtime.tracing import configure_tracing
from atelier.stack.addresses import read_address_file, service_address, write_address_file

log = logging.getLogger(__name__)
P = ParamSpec("P")
T = TypeVar("T")


class BlockingRunner:
    """Runs blocking calls (database, object store) on a bounded thread pool, keeping the caller's
    context (and so its trace) in the worker thread.

    `nice` above 0 runs the pool's threads at that nice value (Linux sets it per thread), for
    background work that should take only the CPU that serving leaves idle."""

    def __init__(self, workers: int, *, nice: int = 0, name: str = "atelier-blocking") -> None:
        initializer = functools.partial(lower_thread_priority, nice) if nice > 0 else None
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix=name, initializer=initializer)

    async def __call__(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        call = functools.partial(contextvars.copy_context().run, fn, *args, **kwargs)
        return await asyncio.get_running_loop().run_in_executor(self._pool, call)

    def shutdown(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=False)


def lower_thread_priority(nice: int) -> None:
    """Give the calling thread nice value `nice` (at most 19) unless it runs nicer already; only on
    Linux, where the value belongs to the thread (elsewhere it would renice the whole process)."""
    if not sys.platform.startswith("linux") or nice <= 0:
        return
    thread = threading.get_native_id()
    current = os.getpriority(os.PRIO_PROCESS, thread)
    if current < nice:
        os.setpriority(os.PRIO_PROCESS, thread, min(nice, 19))


@dataclass
class PeriodicJob:
    """A blocking function the service runs every `interval` seconds on its thread pool; a failure
    is logged and the job goes on."""

    name: str
    interval: float
    run: Callable[[], object]
    runner: BlockingRunner

    async def loop(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.runner(self.run)
            except Exception:  # noqa: BLE001 - a job must outlive one bad round
                log.exception("job %s failed", self.name)


@dataclass
class GrpcService:
    """One gRPC service to host: its full name and how to add its servicer to a server."""

    full_name: str
    register: Callable[[grpc.aio.Server], None]


@dataclass
class ServiceHost:
    """A running server with its health servicer."""

    name: str
    settings: ServiceSettings
    services: Sequence[GrpcService]
    interceptors: Sequence[Any] = ()
    on_stop: list[Callable[[], Awaitable[None] | None]] = field(default_factory=list)
    # Periodic jobs of the service (e.g. failing runs whose process went silent): started with the
    # server, cancelled before it stops.
    jobs: list[PeriodicJob] = field(default_factory=list)
    # The service's Prometheus registry: RPC and process metrics, plus what the service adds.
    registry: CollectorRegistry = field(default_factory=service_registry)
    # Where the calls' spans come from; the global tracer provider unless given.
    tracer_provider: TracerProvider | None = None
    # Access control: by default (ATELIER_AUTH=on) tokens are checked with the IAM service and writes
    # go to its audit log; the IAM service itself passes its own local authorizer.
    authorizer: Authorizer | None = None
    # Lookups the access table names (e.g. a KServe model name to its project).
    auth_lookups: dict[str, Lookup] = field(default_factory=dict)
    # Method prefixes whose successful calls log at DEBUG (a data plane's per-request calls).
    quiet_methods: tuple[str, ...] = ()
    address: str = ""
    # Where clients reach the service when another server fronts this one (Envoy, in front of an
    # internal port): published in the address file instead of `address`.
    published_address: str = ""
    # The host grpc.aio binds, when not the settings' (behind another front end, its internal port
    # listens on loopback only).
    grpc_host: str = ""
    # The service's own HTTP API, when it has one (inference's REST v2): published in the address file too.
    http_address: str = ""
    metrics: MetricsEndpoint | None = None
    # The per-method RPC series, made on start (a service's other front ends count their calls in them too).
    rpc_metrics: RpcMetrics | None = None
    _iam: IamLink | None = None
    _access_built: bool = False
    _authorizer_in_use: Authorizer | None = None
    _server: grpc.aio.Server | None = None
    _health: Any = None
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)

    async def start(self) -> str:
        """Bind, start serving and return the bound `host:port`."""
        options = [
            ("grpc.max_receive_message_length", self.settings.max_message_bytes),
            ("grpc.max_send_message_length", self.settings.max_message_bytes),
            ("grpc.so_reuseport", 0),
        ]
        if self.rpc_metrics is None:
            self.rpc_metrics = RpcMetrics(self.registry)
        server = grpc.aio.server(
            # Tracing, the call log line, RPC metrics, access control and errors in one wrapper per call.
            interceptors=[
                CallInterceptor(
                    self.rpc_metrics,
                    tracing=True,
                    errors=True,
                    tracer_provider=self.tracer_provider,
                    authorizer=self.access_control(),
                    quiet=self.quiet_methods,
                ),
                *self.interceptors,
            ],
            options=options,
        )
        self._health = health.aio.HealthServicer()  # type: ignore[attr-defined]
        health_pb2_grpc.add_HealthServicer_to_server(self._health, server)
        for service in self.services:
            service.register(server)
        names = [s.full_name for s in self.services]
        reflection.enable_server_reflection([*names, health.SERVICE_NAME, reflection.SERVICE_NAME], server)
        bind = self.grpc_host or self.settings.host
        try:
            port = server.add_insecure_port(f"{bind}:{self.settings.port}")
        except RuntimeError:  # grpc's "Failed to bind to address"
            raise Unavailable(
                f"{self.name} cannot listen on {bind}:{self.settings.port}: the port is in use or not allowed; "
                f"choose another with ATELIER_{self.name.upper()}_PORT (0: any free port)",
                metadata={"address": f"{bind}:{self.settings.port}"},
            ) from None
        await server.start()
        for service_name in ["", *names]:
            await self._health.set(service_name, health_pb2.HealthCheckResponse.SERVING)
        self._server = server
        self._tasks = [asyncio.create_task(job.loop(), name=job.name) for job in self.jobs]
        self.address = f"{bind}:{port}"
        if self.settings.metrics_port >= 0:
            self.metrics = serve_metrics(self.registry, self.settings.host, self.settings.metrics_port)
        metrics = self.metrics.address if self.metrics else ""
        published = self.published_address or self.address
        if self.settings.address_file is not None:
            write_address_file(self.settings.address_file, published, os.getpid(), metrics, self.http_address)
        log.info(
            "%s serving on %s (metrics: %s)",
            self.name,
            published,
            f"http://{metrics}/metrics" if metrics else "off",
            extra={"address": published, "metrics": metrics},
        )
        return self.address

    @property
    def health(self) -> Any:
        """The health servicer (grpc's aio one) once started, for another front end to serve too."""
        return self._health

    def access_control(self) -> Authorizer | None:
        """The authorizer calls go through, or None when auth is off (refused off loopback); built
        once, so a service's other endpoints (inference's REST v2) check callers the same way."""
        if not self._access_built:
            self._authorizer_in_use = self._access_control()
            self._access_built = True
        return self._authorizer_in_use

    def _access_control(self) -> Authorizer | None:
        if not validate_mode(self.settings.auth, self.settings.host):
            log.warning("%s: auth is off (listening on %s only): every call is allowed", self.name, self.settings.host)
            return None
        if self.authorizer is not None:
            self.authorizer.lookups.update(self.auth_lookups)
            return self.authorizer
        settings = self.settings
        self._iam = IamLink(
            lambda: settings.iam_address or service_address("iam", settings.home), self.name, settings.token or None
        )
        return Authorizer(
            IdentityCache(self._iam.authenticate, settings.auth_cache_seconds),
            lookups=self.auth_lookups,
            audit=self._iam.audit,
        )

    async def stop(self) -> None:
        """Refuse new calls, let calls in flight finish within the grace period, then clean up."""
        if self._server is None:
            return
        server, self._server = self._server, None
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._health is not None:
            await self._health.enter_graceful_shutdown()
        log.info("%s stopping (grace %.1fs)", self.name, self.settings.shutdown_grace_seconds)
        await server.stop(self.settings.shutdown_grace_seconds)
        for callback in self.on_stop:
            result = callback()
            if result is not None:
                await result
        if self._iam is not None:
            await self._iam.close()
        if self.metrics is not None:
            self.metrics.stop()
            self.metrics = None
        self._unpublish()
        log.info("%s stopped", self.name)

    def _unpublish(self) -> None:
        """Remove the address file this process wrote: a stopped service leaves no address behind
        (a file another process has written since is left alone)."""
        path = self.settings.address_file
        if path is None:
            return
        published = read_address_file(path)
        if published is not None and published.pid == os.getpid():
            path.unlink(missing_ok=True)

    async def serve_until_signalled(self) -> None:
        """Start, then run until SIGTERM or SIGINT, then stop gracefully."""
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await self.start()
        freeze_startup_objects()
        await stop.wait()
        await self.stop()


SettingsT = TypeVar("SettingsT", bound=ServiceSettings)


def serve_main(name: str, settings_type: type[SettingsT], build: Callable[[SettingsT], ServiceHost]) -> None:
    """The body of every `python -m services.<name>`: settings from the environment, logs and traces named
    after the service, then build the host and serve until SIGTERM or SIGINT."""
    settings = load_settings(settings_type, name)
    configure_logging(name, settings.log_level, settings.log_format)
    configure_tracing(f"atelier-{name}")

    async def serve() -> None:
        await build(settings).serve_until_signalled()

    try:
        with asyncio.Runner(loop_factory=event_loop_factory()) as runner:
            runner.run(serve())
    except AtelierError as error:  # a service that cannot start says why in one line
        log.error("%s cannot start: %s", name, error.message)
        sys.exit(1)


def event_loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's event loop where it is installed (it comes with uvicorn's standard extras), else None
    (asyncio's own): grpc.aio's calls cost less CPU on it."""
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop
