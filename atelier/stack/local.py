"""Starting, stopping and inspecting the one-machine stack: each service its own process.

Everything lives under the stack's home: `run/<service>.json` (the address each service publishes once
serving), `run/stack.json` (the pids `up` started) and `logs/<service>.log` (each service's output).
Services start in the order of `SERVICES`, each once the ones before it are serving, so a service can
resolve the addresses of those before it while it starts.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

import atelier
from atelier.errors import DeadlineExceeded, InvalidArgument, Unavailable
from atelier.stack import prometheus
from atelier.stack.addresses import (
    PublishedAddress,
    address_file,
    free_port,
    read_address_file,
    write_address_file,
)
from atelier.stack.http import http_ready
from atelier.stack.identities import auth_env, issue_service_tokens, service_tokens_file
from atelier.stack.processes import POLL_SECONDS, ProcessRecord, StopSignal, send, signals, terminate
from atelier.stack.records import (
    StackRecord,
    read_stack,
    refuse_running,
    remove_run_files,
    running_record,
    stack_file,
    startup_lock,
)
from atelier.stack.services import DEFAULT_BASE_PORT, KNOWN, SERVICES, StackService

STOP_GRACE_SECONDS = 15.0
"""How long `down` waits after SIGTERM before it sends SIGKILL."""
LOG_TAIL_LINES = 20


class Health(StrEnum):
    """What a `grpc.health.v1` check of a service's overall health (service "") said."""

    SERVING = "SERVING"
    NOT_SERVING = "NOT_SERVING"
    UNREACHABLE = "UNREACHABLE"


@dataclass(frozen=True)
class ServiceStatus:
    """One service of the stack as `atelier status` shows it."""

    name: str
    address: str | None
    pid: int | None
    alive: bool
    health: Health
    metrics: str = ""
    http: str = ""
    """host:port of its HTTP API (the gateway's REST side); empty when none."""

    def to_json(self) -> dict[str, Any]:
        """The status as a JSON-ready mapping."""
        return {
            "name": self.name,
            "address": self.address,
            "pid": self.pid,
            "alive": self.alive,
            "health": self.health.value,
            "metrics": self.metrics or None,
            "http": self.http or None,
        }


@dataclass
class _Started:
    """A service process `up` started, and where its output of this run begins in its log."""

    service: StackService
    process: subprocess.Popen[bytes]
    record: ProcessRecord
    log: Path
    log_offset: int


def check_health(address: str, timeout: float = 1.0, service: str = "") -> Health:
    """Ask the `grpc.health.v1` service at `address` about the server's overall health (or `service`'s)."""
    with grpc.insecure_channel(address, options=[("grpc.enable_http_proxy", 0)]) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        try:
            response = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=timeout)
        except grpc.RpcError:
            return Health.UNREACHABLE
    if response.status == health_pb2.HealthCheckResponse.SERVING:
        return Health.SERVING
    return Health.NOT_SERVING


def up(
    home: Path,
    base_port: int = DEFAULT_BASE_PORT,
    services: Sequence[StackService] = SERVICES,
    detach: bool = True,
    timeout: float = 60.0,
    on_ready: Callable[[list[ServiceStatus]], None] | None = None,
    auth: bool = False,
) -> list[ServiceStatus]:
    """Start the stack in `home` and wait until every service is serving.

    With `detach` return then, leaving the services running; without it call `on_ready`, stay until
    SIGINT or SIGTERM and stop the services. Fails, stopping whatever it started, when a service exits
    early or is not serving within `timeout` seconds, and refuses when a stack already runs in `home`.
    With `auth`, every call needs a token (see `atelier/stack/identities.py`).
    """
    _check_ports(base_port, services)
    home = home.absolute()
    supervisor = None if detach else ProcessRecord.of(os.getpid())
    stop = StopSignal()
    with signals(stop):
        with startup_lock(home):
            refuse_running(home, services)
            remove_run_files(home, services)
            tokens = issue_service_tokens(home, services) if auth else None
            started = _start_all(home, base_port, services, supervisor, timeout, tokens)
        stop.interrupt = False
        try:
            statuses = status(home, services)
            if on_ready is not None:
                on_ready(statuses)
            if not detach:
                _wait_for_stop(stop.event, started)
        finally:
            if not detach:
                _stop_started(home, services, started)
    return statuses


def down(home: Path, services: Sequence[StackService] = SERVICES) -> dict[str, int]:
    """Stop the stack in `home` (SIGTERM, then SIGKILL after `STOP_GRACE_SECONDS`), remove its run files.

    Returns the pid of each service that was running.
    """
    home = home.absolute()
    record = running_record(home, services)
    supervisor = record.supervisor
    if supervisor is not None and supervisor.pid != os.getpid() and supervisor.running():
        send(supervisor.pid, signal.SIGTERM)
    running = {name: process for name, process in record.services.items() if process.running()}
    terminate(list(running.values()), STOP_GRACE_SECONDS, kill_groups=True)
    if supervisor is not None and supervisor.pid != os.getpid():
        terminate([supervisor], STOP_GRACE_SECONDS)
    remove_run_files(home, services, extra=record.services)
    service_tokens_file(home).unlink(missing_ok=True)
    return {name: process.pid for name, process in running.items()}


def status(home: Path, services: Sequence[StackService] = SERVICES) -> list[ServiceStatus]:
    """The address, pid, liveness and health of each service of the stack in `home`."""
    home = home.absolute()
    record = read_stack(home) or StackRecord(supervisor=None, services={})
    names = [s.name for s in services] + [n for n in record.services if n not in {s.name for s in services}]
    return [_service_status(home, name, record.services.get(name)) for name in names]


def _service_status(home: Path, name: str, process: ProcessRecord | None) -> ServiceStatus:
    published = read_address_file(address_file(home, name))
    if process is None and published is not None and published.pid is not None:
        process = ProcessRecord(pid=published.pid, start_time=None)
    alive = process is not None and process.running()
    address = published.address if published is not None and (alive or process is None) else None
    health = _health(KNOWN.get(name), published if address else None)
    pid = process.pid if process else None
    metrics = published.metrics if published is not None and address else ""
    http = published.http if published is not None and address else ""
    return ServiceStatus(name=name, address=address, pid=pid, alive=alive, health=health, metrics=metrics, http=http)


def _health(service: StackService | None, published: PublishedAddress | None) -> Health:
    if published is None:
        return Health.UNREACHABLE
    if service is not None and service.kind == "prometheus":
        return Health.SERVING if prometheus.ready(published.address) else Health.UNREACHABLE
    if service is not None and service.kind == "gateway" and not http_ready(published.http):
        return Health.UNREACHABLE
    return check_health(published.address)


def _check_ports(base_port: int, services: Sequence[StackService]) -> None:
    """Fail unless every service's port (base port plus its offset) is a valid port."""
    last = base_port + max((offset for s in services for offset in s.offsets()), default=0)
    if base_port and not 0 < last <= 65535:
        raise InvalidArgument(f"base port {base_port} puts the last service on port {last}, above 65535")


def _start_all(
    home: Path,
    base_port: int,
    services: Sequence[StackService],
    supervisor: ProcessRecord | None,
    timeout: float,
    tokens: Mapping[str, str] | None = None,
) -> list[_Started]:
    """Start the services one after the other, each once the ones before it are serving; on failure
    stop those started."""
    deadline = time.monotonic() + timeout
    started: list[_Started] = []
    addresses: dict[str, str] = {}
    try:
        for service in services:
            started.append(_spawn(service, home, base_port, {**addresses, **auth_env(service, home, tokens)}))
            _write_stack(home, supervisor, started)
            addresses[service.env_var("address")] = _wait_serving(home, started[-1], deadline, timeout)
            published = read_address_file(address_file(home, service.name))
            if published is not None and published.metrics:
                prometheus.write_targets(home, service.name, published.metrics)
    except BaseException:
        _stop_started(home, services, started)
        raise
    return started


def _stop_started(home: Path, services: Sequence[StackService], started: Sequence[_Started]) -> None:
    """Stop the services this process started, reap them and remove the run files."""
    terminate([item.record for item in started], STOP_GRACE_SECONDS, kill_groups=True)
    for item in started:
        item.process.poll()
    remove_run_files(home, services)


def _spawn(service: StackService, home: Path, base_port: int, addresses: Mapping[str, str]) -> _Started:
    """Start one service as `python -m <module>` in its own session, its output going to its log."""
    log = home / "logs" / f"{service.name}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    if service.kind == "prometheus":
        port = service.port(base_port) or free_port()
        argv, env = prometheus.command(home, port), dict(os.environ)
    else:
        argv = [sys.executable, "-m", service.module]
        env = _service_env(service, home, base_port, addresses)
    with log.open("ab") as output:
        offset = output.tell()
        process = subprocess.Popen(
            argv, env=env, stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT, start_new_session=True
        )
    if service.kind == "prometheus":
        write_address_file(address_file(home, service.name), f"127.0.0.1:{port}", process.pid)
    record = ProcessRecord.of(process.pid)
    return _Started(service=service, process=process, record=record, log=log, log_offset=offset)


def _service_env(service: StackService, home: Path, base_port: int, peers: Mapping[str, str]) -> dict[str, str]:
    """The environment of a service: the caller's, plus its home, port(s) and address file, and `peers`
    (the `ATELIER_<NAME>_ADDRESS` of the services started before it)."""
    project_root = str(Path(atelier.__file__).resolve().parent.parent)
    python_path = os.pathsep.join(p for p in (project_root, os.environ.get("PYTHONPATH", "")) if p)
    http_port = service.http_port(base_port)
    http = {} if http_port is None else {service.env_var("http_port"): str(http_port)}
    return {
        **http,
        **os.environ,
        **peers,
        "ATELIER_HOME": str(home),
        service.env_var("home"): str(home),
        service.env_var("port"): str(service.port(base_port)),
        service.env_var("address_file"): str(address_file(home, service.name)),
        "PYTHONPATH": python_path,
        "PYTHONUNBUFFERED": "1",
    }


def _wait_serving(home: Path, started: _Started, deadline: float, timeout: float) -> str:
    """Wait until the service has published its address and reports SERVING there; return the address."""
    name = started.service.name
    while True:
        code = started.process.poll()
        if code is not None:
            reason = _start_failure(started)
            if reason:
                hint = "; `atelier up --base-port N` moves every service's ports" if "cannot listen" in reason else ""
                raise Unavailable(f"the {name} service could not start: {reason} (its log: {started.log}){hint}")
            raise Unavailable(
                f"the {name} service exited with code {code} before it was serving; "
                f"last lines of {started.log}:\n{_log_tail(started)}"
            )
        published = read_address_file(address_file(home, name))
        if published is not None and _serving(started.service, published):
            return published.address
        if time.monotonic() > deadline:
            raise DeadlineExceeded(
                f"the {name} service was not serving after {timeout:g}s; "
                f"last lines of {started.log}:\n{_log_tail(started)}"
            )
        time.sleep(POLL_SECONDS)


def _serving(service: StackService, published: PublishedAddress) -> bool:
    if service.kind == "prometheus":
        return prometheus.ready(published.address, timeout=0.5)
    if service.kind == "gateway" and not http_ready(published.http, timeout=0.5):
        return False
    return check_health(published.address, timeout=0.5) is Health.SERVING


def _start_failure(started: _Started) -> str:
    """Why the service said it could not start (its last `cannot start` log record), or ''."""
    for line in reversed(_log_text(started).splitlines()):
        try:
            record = json.loads(line)
        except ValueError:
            continue
        message = record.get("message", "") if isinstance(record, dict) else ""
        if isinstance(message, str) and " cannot start: " in message:
            return message.split(" cannot start: ", 1)[1]
    return ""


def _log_text(started: _Started) -> str:
    """What the service wrote to its log in this run ('' when the log cannot be read)."""
    try:
        with started.log.open("rb") as log:
            log.seek(started.log_offset)
            return log.read().decode(errors="replace")
    except OSError:
        return ""


def _log_tail(started: _Started) -> str:
    """The last lines the service wrote to its log in this run, indented."""
    try:
        with started.log.open("rb") as log:
            log.seek(started.log_offset)
            text = log.read().decode(errors="replace")
    except OSError as error:
        return f"  (log unreadable: {error})"
    lines = text.rstrip().splitlines()[-LOG_TAIL_LINES:]
    return "\n".join(f"  {line}" for line in lines) if lines else "  (the log is empty)"


def _wait_for_stop(stop: threading.Event, started: Sequence[_Started]) -> None:
    """Wait until `stop` is set (by SIGINT or SIGTERM); fail if a service exits by itself before that."""
    while not stop.wait(0.5):
        for item in started:
            code = item.process.poll()
            if code is not None and not stop.is_set():
                raise Unavailable(
                    f"the {item.service.name} service exited with code {code}; stopping the stack; "
                    f"last lines of {item.log}:\n{_log_tail(item)}"
                )


def _write_stack(home: Path, supervisor: ProcessRecord | None, started: Sequence[_Started]) -> None:
    """Atomically record the processes of the stack in `run/stack.json`."""

    def entry(process: ProcessRecord) -> dict[str, Any]:
        return {"pid": process.pid, "start_time": process.start_time}

    content = {
        "supervisor": entry(supervisor) if supervisor else None,
        "services": {
            item.service.name: {
                **entry(item.record),
                "module": item.service.module,
                "log": str(item.log),
            }
            for item in started
        },
    }
    path = stack_file(home)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(content, indent=2))
    os.replace(tmp, path)
