"""nginx in front of the front door: the stack services' calls forwarded by a C proxy, the rest by Python.

A call through the Python front door pays for a second `grpc.aio` hop (its server and its client, each
with its thread hand-offs): about 0.7 ms at one caller, against about 0.1 ms through nginx's gRPC proxy
(`grpc_pass`, in Debian's `nginx` package). So when nginx is installed the gateway runs it as a child
process on the front door's public address, with a route per stack service that has an address: its
methods (by package: `/atelier.data.` goes to the data service, `/inference.` to the inference service)
pass straight to the service as HTTP/2 streams, unary and streaming alike, metadata, deadline
(`grpc-timeout`), status and trailers untouched. Everything else goes to the Python front door on an
internal port: health and reflection (which speak for every service behind), services the gateway
serves itself, services without an address (answered UNAVAILABLE naming them) and unknown methods.

What nginx does for a forwarded call, as the Python front door would: the caller's `x-request-id`
when it is a sensible one, else a new one, sent to the service and returned in the answer's headers
(which are a failed call's trailers); a service it cannot reach ends the call UNAVAILABLE naming the
service and its address (a gRPC error, not HTTP 502). When the front door counts its calls (RPC
metrics), nginx sends a line per forwarded call (method, status, seconds) to the gateway over loopback
syslog (UDP), and the gateway counts it in the same series as the calls it forwards itself
(`CallLog`). What nginx does not do: a span of its own (the caller's trace context reaches the service
unchanged, so the service's span is the caller's child).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import signal
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from atelier.runtime.metrics import RpcMetrics
from atelier.stack.addresses import free_port, host_port
from gateway.context import REQUEST_ID_PATTERN
from gateway.frontdoor.call_log import LOG_FORMAT, LOG_TAG, CallLog
from gateway.frontdoor.routing import KSERVE_PACKAGE

log = logging.getLogger(__name__)

SEARCH_PATH = (os.environ.get("PATH", ""), "/usr/sbin", "/usr/local/sbin", "/sbin")
"""Debian installs nginx in /usr/sbin, which an unprivileged user's PATH may not list."""

LONG = "1d"
"""Timeouts between reads and writes of a call: a followed log or a slow upload may be quiet for a long
time, and a call's deadline is the caller's to set (it travels as `grpc-timeout`)."""


def find_nginx(binary: str = "nginx") -> str | None:
    """The nginx executable: `binary` as a path, or looked up on PATH and in the sbin directories."""
    if os.sep in binary:
        return binary if os.access(binary, os.X_OK) else None
    return shutil.which(binary, path=os.pathsep.join(p for p in SEARCH_PATH if p))


@dataclass(frozen=True)
class Forward:
    """The method paths of one stack service that nginx passes straight to it."""

    service: str
    """`data`, `inference`, ..."""
    address: str
    """host:port of the service."""
    prefixes: tuple[str, ...]
    """Path prefixes of its packages (`/atelier.data.`, `/inference.`)."""


def package_prefixes(service: str) -> tuple[str, ...]:
    """The path prefixes of the packages a stack service owns (`routing.owner_of` in reverse)."""
    prefixes = [f"/atelier.{service}."]
    if service == "inference":
        prefixes.append(f"/{KSERVE_PACKAGE}.")
    return tuple(prefixes)


def _grpc_error(status: int, message: str) -> str:
    # A trailers-only gRPC answer: one HEADERS frame ending the stream, the status in it (as nginx's own
    # documentation answers gRPC errors).
    return (
        "default_type application/grpc; "
        f"add_header grpc-status {status} always; "
        f'add_header grpc-message "{quote(message, safe=" ,.:/()-_")}" always; '
        "add_header x-request-id $atelier_request_id always; "
        "return 204;"
    )


_ANSWER = "add_header x-request-id $atelier_request_id always; add_header traceparent $http_traceparent always;"
"""What a forwarded call's answer gets in its headers (the Python front door adds its own to what it
answers). No trailer: with `add_trailer` configured nginx never ends a stream on its HEADERS frame, which
breaks gRPC's trailers-only answers (every error a service sends before a message); an error's headers
are its trailers, so the request id is in the trailers of failed calls, the headers of the others."""


def render(
    listen: str,
    door: str,
    forwards: Sequence[Forward],
    local: Sequence[str],
    directory: Path,
    log_to: str | None = None,
) -> str:
    """The configuration: `listen` (host:port) for callers, `door` the Python front door's address,
    `local` the full names of the services the gateway serves itself (never forwarded), `log_to` the
    host:port (UDP) a line per forwarded call goes to, if any."""
    upstreams, locations = [], []
    logged = f" access_log syslog:server={log_to},nohostname,tag={LOG_TAG} atelier_calls;" if log_to else ""
    answer = _ANSWER + logged
    for index, forward in enumerate(forwards):
        name = f"svc{index}_{forward.service}"
        upstreams.append(f"  upstream {name} {{ server {forward.address}; keepalive 64; keepalive_requests 1000000; }}")
        unreachable = f"the {forward.service} service at {forward.address} is unavailable: no answer from it"
        locations.append(f"    location @down_{name} {{ {_grpc_error(14, unreachable)}{logged} }}")
        for prefix in forward.prefixes:
            locations.append(
                f"    location {prefix} {{ grpc_pass grpc://{name}; error_page 502 504 = @down_{name}; {answer} }}"
            )
    for full_name in local:  # a longer prefix than the package's: served by the Python front door
        locations.append(f"    location /{full_name}/ {{ grpc_pass grpc://front_door; }}")
    return "\n".join(
        [
            "worker_processes auto;",
            "daemon off;",
            "master_process on;",
            f"pid {directory / 'nginx.pid'};",
            "error_log stderr warn;",
            "events { worker_connections 4096; }",
            "http {",
            "  access_log off;",
            f"  log_format atelier_calls '{LOG_FORMAT}';",
            f"  client_body_temp_path {directory / 'body'};",
            *(f"  {kind}_temp_path {directory / kind};" for kind in ("proxy", "fastcgi", "uwsgi", "scgi")),
            "  client_max_body_size 0;",  # messages are the services' to limit
            "  large_client_header_buffers 8 64k;",
            f"  client_body_timeout {LONG}; send_timeout {LONG}; keepalive_timeout {LONG};",
            "  keepalive_requests 1000000;",
            f"  grpc_read_timeout {LONG}; grpc_send_timeout {LONG}; grpc_connect_timeout 5s;",
            "  grpc_buffer_size 64k;",
            "  grpc_socket_keepalive on;",
            f'  map $http_x_request_id $atelier_request_id {{ "~^{REQUEST_ID_PATTERN}$" $http_x_request_id; '
            "default $request_id; }",
            "  grpc_set_header x-request-id $atelier_request_id;",
            f"  upstream front_door {{ server {door}; keepalive 64; keepalive_requests 1000000; }}",
            *upstreams,
            "  server {",
            f"    listen {listen} http2;",
            "    location / { grpc_pass grpc://front_door; }",
            *locations,
            "  }",
            "}",
            "",
        ]
    )


class NginxFrontDoor:
    """nginx run by the gateway in front of its Python front door (see the module's docstring)."""

    STARTS = 3

    def __init__(
        self,
        binary: str,
        host: str,
        port: int,
        door: str,
        forwards: Sequence[Forward],
        local: Sequence[str] = (),
        shutdown_grace: float = 5.0,
        metrics: RpcMetrics | None = None,
    ) -> None:
        self._metrics = metrics
        self._log: CallLog | None = None
        self._binary = binary
        self._host = host
        self._port = port
        self._door = door
        self._forwards = list(forwards)
        self._local = list(local)
        self._grace = shutdown_grace
        self._directory: Path | None = None
        self._process: asyncio.subprocess.Process | None = None
        self._watch: asyncio.Task[None] | None = None
        self.address = ""

    async def start(self) -> str:
        """Start nginx on the public address and return it once it accepts connections."""
        self._directory = Path(tempfile.mkdtemp(prefix="atelier-front-door-"))
        log_to = None
        if self._metrics is not None:
            self._log, log_to = await CallLog.open(self._metrics)
        problem = ""
        for _ in range(self.STARTS if self._port == 0 else 1):
            port = self._port or free_port(self._host)
            listen = host_port(self._host, port)  # a start that loses the port's race is retried
            (self._directory / "nginx.conf").write_text(
                render(listen, self._door, self._forwards, self._local, self._directory, log_to)
            )
            problem = await self._launch(port)
            if not problem:
                self.address = listen
                self._watch = asyncio.create_task(self._supervise())
                routes = ", ".join(f"{f.service} -> {f.address}" for f in self._forwards) or "none"
                log.info("front door: nginx on %s (forwarding %s; the rest to %s)", listen, routes, self._door)
                return listen
        shutil.rmtree(self._directory, ignore_errors=True)
        if self._log is not None:
            await self._log.close()
        raise RuntimeError(
            f"nginx did not start as the front door: {problem} "
            "(set ATELIER_GATEWAY_FRONT_DOOR_PROXY=python to serve the front door from Python only)"
        )

    async def _launch(self, port: int) -> str:
        """Start nginx and wait until it listens; '' when it does, else what it said."""
        assert self._directory is not None
        conf = self._directory / "nginx.conf"
        process = await asyncio.create_subprocess_exec(
            self._binary, "-e", "stderr", "-p", str(self._directory), "-c", str(conf),
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        pid_file = self._directory / "nginx.pid"
        deadline = time.monotonic() + 10
        try:
            while time.monotonic() < deadline:
                if process.returncode is not None:
                    break
                # Its pid file is written once its sockets are bound: a port that accepts before that may be
                # another process's (nginx retries a taken port for a few seconds, then gives up).
                if _pid_in(pid_file) == process.pid and await _accepts(self._host, port):
                    self._process = process
                    return ""
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(process.wait(), 0.02)
        except asyncio.CancelledError:  # the gateway stops meanwhile: leave no nginx behind
            if process.returncode is None:
                process.kill()
                await process.wait()
            raise
        if process.returncode is None:
            process.kill()
            await process.wait()
            return "it did not listen within 10 s"
        assert process.stderr is not None
        said = (await process.stderr.read()).decode(errors="replace").strip().splitlines()
        first_emergency = next((line for line in said if "[emerg]" in line), None)  # the cause, not the giving up
        return first_emergency or (said[-1] if said else f"it exited with status {process.returncode}")

    @property
    def pid(self) -> int | None:
        """The nginx master's process id while it runs."""
        return self._process.pid if self._process is not None else None

    async def _supervise(self) -> None:
        """Log what nginx says; start it again if it dies while the gateway runs."""
        while self._process is not None:
            process = self._process
            assert process.stderr is not None
            async for line in process.stderr:
                log.warning("nginx: %s", line.decode(errors="replace").rstrip())
            await process.wait()
            if self._process is not process:
                return
            log.error("nginx (the front door) exited with status %s; starting it again", process.returncode)
            await asyncio.sleep(0.5)
            problem = await self._launch(int(self.address.rpartition(":")[2]))
            if problem:
                log.error("nginx did not start again: %s", problem)
                self._process = None

    async def stop(self) -> None:
        """Let calls in flight finish (nginx's graceful stop) for the grace period, then end it."""
        process, self._process = self._process, None
        if process is not None and process.returncode is None:
            process.send_signal(signal.SIGQUIT)
            try:
                await asyncio.wait_for(process.wait(), self._grace)
            except TimeoutError:
                process.kill()
                await process.wait()
        if self._watch is not None:
            self._watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watch
        if self._directory is not None:
            shutil.rmtree(self._directory, ignore_errors=True)
        if self._log is not None:
            await self._log.close()


def _pid_in(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


async def _accepts(host: str, port: int) -> bool:
    try:
        _, writer = await asyncio.open_connection(host, port)
    except OSError:
        return False
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return True


def forwards_for(addresses: Mapping[str, str]) -> list[Forward]:
    """A route for each service with an address."""
    return [Forward(service, address, package_prefixes(service)) for service, address in sorted(addresses.items())]
